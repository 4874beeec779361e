//! Any bytes through the fast YAML path and serde-saphyr: whenever the fast path reads a file,
//! it must read it exactly as serde-saphyr does.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    canary_xds::input::yaml::check_fast_path(data);
});
