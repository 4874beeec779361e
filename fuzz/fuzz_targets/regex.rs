//! Any pattern through the regex check: refused or sized, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|pattern: &str| {
    if let Ok(size) = canary_xds::input::regex_check::program_size_estimate(pattern) {
        assert!(size > 0);
    }
});
