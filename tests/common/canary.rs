//! The canary set-up of the end-to-end tests, as in the docs: a main service and its canary on
//! `/qotm/`, their Mapping files, their clusters' names, and the split Envoy routes them by.

use super::mapping::mapping;
use super::upstream::Upstream;

/// `qotm.yaml` (the main service) and `qotmv2.yaml` (the canary at `weight`%), both on `/qotm/`
/// and reaching their upstreams by IP.
pub fn canary_files(
    main: &Upstream,
    canary: &Upstream,
    weight: u32,
) -> [(&'static str, String); 2] {
    [
        ("qotm.yaml", mapping("qotm", "/qotm/", &main.by_ip(), "")),
        (
            "qotmv2.yaml",
            mapping(
                "qotmv2",
                "/qotm/",
                &canary.by_ip(),
                &format!("weight: {weight}\n"),
            ),
        ),
    ]
}

/// The names canary-xds gives the clusters of the two upstreams (by IP): (main, canary).
pub fn canary_clusters(main: &Upstream, canary: &Upstream) -> (String, String) {
    (
        format!("127_0_0_1_{}", main.port),
        format!("127_0_0_1_{}", canary.port),
    )
}

/// The weights Envoy routes by with the canary at `weight`%: (cluster, basis points), the main
/// cluster first.
pub fn canary_split<'a>(main: &'a str, canary: &'a str, weight: u32) -> [(&'a str, u64); 2] {
    [
        (main, u64::from(100 - weight) * 100),
        (canary, u64::from(weight) * 100),
    ]
}
