//! Unit tests of the stream protocol state: SotW and delta requests, plans, make-before-break,
//! the runtime layer and sending.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;

use super::*;
use crate::xds::Snapshot;
use crate::xds::archive::Archive;
use crate::xds::resource::Layer;

#[test]
fn is_subset_walks_both_sorted_maps() {
    let m = |names: &[&str]| -> BTreeMap<String, ()> {
        names.iter().map(|n| (n.to_string(), ())).collect()
    };
    assert!(is_subset(&m(&[]), &m(&["a"])));
    assert!(is_subset(&m(&["a", "c"]), &m(&["a", "b", "c"])));
    assert!(!is_subset(&m(&["a", "d"]), &m(&["a", "b", "c"])));
    assert!(!is_subset(&m(&["0"]), &m(&["a"])));
    assert!(!is_subset(&m(&["a", "b"]), &m(&["a"])));
}

/// The kinds an Envoy without the runtime layer asks for.
const PLAIN: [Kind; 3] = [Kind::Cluster, Kind::Listener, Kind::Route];
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;

fn resource(kind: Kind, name: &str, version: &str, refs: &[&str]) -> Arc<Resource> {
    Arc::new(Resource::new(
        kind,
        name.into(),
        version.into(),
        vec![],
        refs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    ))
}

/// A snapshot with the given clusters (name@version) and one route table naming `refs`.
fn snap(clusters: &[(&str, &str)], route_version: &str, refs: &[&str]) -> Snapshot {
    let set = |items: Vec<Arc<Resource>>| {
        ResourceSet::new(items.into_iter().map(|r| (r.name.clone(), r)).collect())
    };
    Snapshot::plain(
        "default".into(),
        set(clusters
            .iter()
            .map(|(n, v)| resource(Kind::Cluster, n, v, &[]))
            .collect()),
        set(vec![resource(Kind::Listener, "l", "1", &[])]),
        set(vec![resource(
            Kind::Route,
            "canary-xds",
            route_version,
            refs,
        )]),
    )
}

fn node() -> Option<Node> {
    Some(Node {
        id: "envoy-1".into(),
        cluster: "default".into(),
        ..Default::default()
    })
}

fn req(kind: Kind, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node(),
        type_url: kind.type_url().into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// What an Envoy names in its SotW requests of `kind`: the one route table, nothing else.
fn names_of(kind: Kind) -> &'static [&'static str] {
    if kind == Kind::Route {
        &["canary-xds"]
    } else {
        &[]
    }
}

fn nack(kind: Kind, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status {
            code: 13,
            message: "bad".into(),
            ..Default::default()
        }),
        ..req(kind, names_of(kind), "", nonce)
    }
}

fn decode(r: &Response) -> DiscoveryResponse {
    DiscoveryResponse::decode(r.body.to_vec().as_slice()).unwrap()
}

/// Connects a SotW stream and ACKs everything until it is in sync with `s`.
fn sync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) {
    for kind in PLAIN {
        let names = names_of(kind);
        if !st.types[index(kind)].subscribed {
            st.on_sotw(&req(kind, names, "", ""), a).unwrap();
        }
    }
    for _ in 0..10 {
        let out = st.plan(s, a);
        if out.is_empty() {
            return;
        }
        for r in out {
            let names = names_of(r.kind);
            st.on_sotw(&req(r.kind, names, &r.version, &r.nonce), a)
                .unwrap();
        }
    }
    panic!("never in sync");
}

fn held(st: &StreamState, kind: Kind) -> Vec<String> {
    st.types[index(kind)].acked.names().cloned().collect()
}

#[test]
fn a_new_envoy_gets_clusters_then_listeners_then_routes() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let s = snap(&[("qotm", "1"), ("qotmv2", "1")], "r1", &["qotm", "qotmv2"]);
    st.on_sotw(&req(Kind::Cluster, &[], "", ""), &a).unwrap();
    st.on_sotw(&req(Kind::Listener, &[], "", ""), &a).unwrap();
    let out = st.plan(&s, &mut a);
    assert_eq!(out.len(), 1, "only CDS before its ACK");
    assert_eq!(out[0].kind, Kind::Cluster);
    assert_eq!(decode(&out[0]).resources.len(), 2);
    st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    let out = st.plan(&s, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Listener]
    );
    st.on_sotw(&req(Kind::Route, &["canary-xds"], "", ""), &a)
        .unwrap();
    let out2 = st.plan(&s, &mut a);
    assert_eq!(
        out2.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
    assert_eq!(decode(&out2[0]).resources.len(), 1);
}

#[test]
fn routes_wait_for_their_clusters_and_old_clusters_go_last() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let s1 = snap(&[("qotm", "1")], "r1", &["qotm"]);
    sync(&mut st, &s1, &mut a);
    // One save moves the route from qotm to other.
    let s2 = snap(&[("other", "1")], "r2", &["other"]);
    let out = st.plan(&s2, &mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, Kind::Cluster);
    // Both clusters: qotm is still used by the route Envoy holds.
    assert_eq!(decode(&out[0]).resources.len(), 2);
    st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    let out = st.plan(&s2, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
    // While the route is in flight, qotm stays.
    assert!(st.plan(&s2, &mut a).is_empty());
    st.on_sotw(
        &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
        &a,
    )
    .unwrap();
    let out = st.plan(&s2, &mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, Kind::Cluster);
    assert_eq!(
        decode(&out[0]).resources.len(),
        1,
        "qotm removed after the route ACK"
    );
    st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    assert!(st.plan(&s2, &mut a).is_empty());
    assert_eq!(held(&st, Kind::Cluster), ["other"]);
}

#[test]
fn a_weight_change_sends_only_routes() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    sync(
        &mut st,
        &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
        &mut a,
    );
    let out = st.plan(&snap(&[("a", "1"), ("b", "1")], "r2", &["a", "b"]), &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
}

#[test]
fn nothing_is_sent_when_nothing_changed() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let s = snap(&[("a", "1")], "r1", &["a"]);
    sync(&mut st, &s, &mut a);
    assert!(st.plan(&s, &mut a).is_empty());
    // An equal snapshot built again is the same content.
    assert!(
        st.plan(&snap(&[("a", "1")], "r1", &["a"]), &mut a)
            .is_empty()
    );
}

#[test]
fn a_nack_is_not_answered_with_the_same_version() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let s1 = snap(&[("a", "1")], "r1", &["a"]);
    sync(&mut st, &s1, &mut a);
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    let ev = st.on_sotw(&nack(Kind::Route, &out[0].nonce), &a).unwrap();
    assert!(matches!(&ev[0], Event::Nack { kind: Kind::Route, message, .. } if message == "bad"));
    // No resend loop: the same snapshot sends nothing.
    assert!(st.plan(&s2, &mut a).is_empty());
    assert!(st.plan(&s2, &mut a).is_empty());
    assert_eq!(
        st.status(Kind::Route).acked,
        Some(ResourceSet::shared(s1.routes.items.clone()).version)
    );
    // The next change goes out.
    let s3 = snap(&[("a", "1")], "r3", &["a"]);
    assert_eq!(st.plan(&s3, &mut a).len(), 1);
}

#[test]
fn stale_nonces_are_not_acks() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &snap(&[("a", "1")], "r1", &["a"]), &mut a);
    let out = st.plan(&snap(&[("a", "1")], "r2", &["a"]), &mut a);
    let ev = st
        .on_sotw(&req(Kind::Route, &["canary-xds"], "x", "999"), &a)
        .unwrap();
    assert!(ev.is_empty());
    assert!(st.status(Kind::Route).waiting_for_ack);
    st.on_sotw(
        &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
        &a,
    )
    .unwrap();
    assert!(!st.status(Kind::Route).waiting_for_ack);
}

#[test]
fn newly_requested_names_are_answered_even_when_unchanged() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let s = snap(&[("a", "1")], "r1", &["a"]);
    sync(&mut st, &s, &mut a);
    let nonce = st.types[index(Kind::Route)].last_nonce.clone().unwrap();
    // Envoy drops the name, then asks for it again.
    st.on_sotw(&req(Kind::Route, &[], "", &nonce), &a).unwrap();
    let out = st.plan(&s, &mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(decode(&out[0]).resources.len(), 0);
    st.on_sotw(&req(Kind::Route, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    st.on_sotw(&req(Kind::Route, &["canary-xds"], "", &out[0].nonce), &a)
        .unwrap();
    let out = st.plan(&s, &mut a);
    assert_eq!(decode(&out[0]).resources.len(), 1);
}

#[test]
fn a_reconnecting_envoy_keeps_its_clusters_until_its_routes_are_known() {
    let mut a = Archive::default();
    let s1 = snap(&[("old", "1")], "r1", &["old"]);
    a.record_snapshot(&s1);
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &s1, &mut a);
    let cds_version = st.status(Kind::Cluster).acked.unwrap();
    let rds_version = st.status(Kind::Route).acked.unwrap();
    // The server restarted, the route moved to `new`; Envoy reconnects, CDS first.
    let s2 = snap(&[("new", "1")], "r2", &["new"]);
    let mut again = StreamState::new(Variant::Sotw);
    again
        .on_sotw(&req(Kind::Cluster, &[], &cds_version, ""), &a)
        .unwrap();
    let out = again.plan(&s2, &mut a);
    assert_eq!(
        decode(&out[0]).resources.len(),
        2,
        "old is kept: Envoy may still route to it"
    );
    again
        .on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    again
        .on_sotw(&req(Kind::Route, &["canary-xds"], &rds_version, ""), &a)
        .unwrap();
    let out = again.plan(&s2, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
    again
        .on_sotw(
            &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
            &a,
        )
        .unwrap();
    let out = again.plan(&s2, &mut a);
    assert_eq!(
        decode(&out[0]).resources.len(),
        1,
        "old goes once the new routes are held"
    );
}

#[test]
fn a_reconnect_with_an_unknown_version_is_reported() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let ev = st
        .on_sotw(&req(Kind::Route, &["canary-xds"], "from-before", ""), &a)
        .unwrap();
    assert_eq!(
        ev,
        [Event::UnknownVersion {
            kind: Kind::Route,
            version: "from-before".into()
        }]
    );
    let _ = st.plan(&snap(&[("a", "1")], "r1", &["a"]), &mut a);
}

#[test]
fn the_first_request_needs_a_node() {
    let a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let r = DiscoveryRequest {
        node: None,
        ..req(Kind::Cluster, &[], "", "")
    };
    assert_eq!(st.on_sotw(&r, &a), Err(ProtocolError::NoNode));
    let r = DiscoveryRequest {
        type_url: String::new(),
        ..req(Kind::Cluster, &[], "", "")
    };
    assert_eq!(st.on_sotw(&r, &a), Err(ProtocolError::NoTypeUrl));
    assert_eq!(st.fleet(), Some("default"));
}

#[test]
fn unknown_types_are_reported_not_answered() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    let r = DiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
        ..req(Kind::Cluster, &[], "", "")
    };
    assert!(matches!(
        st.on_sotw(&r, &a).unwrap()[0],
        Event::UnknownType { .. }
    ));
    assert!(st.plan(&snap(&[], "r", &[]), &mut a).is_empty());
}

// --- delta ---

fn dreq(kind: Kind, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node(),
        type_url: kind.type_url().into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn ddecode(r: &Response) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse::decode(r.body.to_vec().as_slice()).unwrap()
}

fn dsync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) -> Vec<DeltaDiscoveryResponse> {
    let mut seen = Vec::new();
    for kind in PLAIN {
        if !st.types[index(kind)].subscribed {
            let names = names_of(kind);
            st.on_delta(&dreq(kind, names, ""), a).unwrap();
        }
    }
    for _ in 0..10 {
        let out = st.plan(s, a);
        if out.is_empty() {
            return seen;
        }
        for r in out {
            seen.push(ddecode(&r));
            st.on_delta(&dreq(r.kind, &[], &r.nonce), a).unwrap();
        }
    }
    panic!("never in sync");
}

#[test]
fn delta_sends_only_changes_and_removes_old_clusters_after_routes_move() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Delta);
    let first = dsync(
        &mut st,
        &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
        &mut a,
    );
    assert_eq!(first[0].resources.len(), 2);
    // The canary b is deleted.
    let seen = dsync(&mut st, &snap(&[("a", "1")], "r2", &["a"]), &mut a);
    let kinds: Vec<&str> = seen
        .iter()
        .map(|r| r.type_url.rsplit('.').next().unwrap())
        .collect();
    assert_eq!(kinds, ["RouteConfiguration", "Cluster"]);
    assert_eq!(seen[1].removed_resources, ["b"]);
    assert!(seen[1].resources.is_empty(), "a removal, not a full resend");
    assert_eq!(held(&st, Kind::Cluster), ["a"]);
}

#[test]
fn delta_reconnect_with_initial_versions_sends_nothing_new_and_keeps_unknown_clusters() {
    let mut a = Archive::default();
    let s = snap(&[("a", "1")], "r1", &["a"]);
    let mut st = StreamState::new(Variant::Delta);
    dsync(&mut st, &s, &mut a);
    let mut again = StreamState::new(Variant::Delta);
    let mut r = dreq(Kind::Cluster, &[], "");
    r.initial_resource_versions = [
        ("a".to_string(), "1".to_string()),
        ("mystery".to_string(), "9".to_string()),
    ]
    .into();
    again.on_delta(&r, &a).unwrap();
    let mut r = dreq(Kind::Route, &["canary-xds"], "");
    r.initial_resource_versions = [("canary-xds".to_string(), "old".to_string())].into();
    let ev = again.on_delta(&r, &a).unwrap();
    assert!(matches!(ev[0], Event::UnknownVersion { .. }));
    let out = again.plan(&s, &mut a);
    // No cluster response: a is held as it is, and mystery may still be routed to. Envoy
    // already holds cluster a, so the route table goes at once.
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
    again
        .on_delta(&dreq(Kind::Route, &[], &out[0].nonce), &a)
        .unwrap();
    // Now our route table is held: mystery goes.
    let out = again.plan(&s, &mut a);
    assert_eq!(ddecode(&out[0]).removed_resources, ["mystery"]);
}

#[test]
fn delta_nack_is_not_resent() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Delta);
    dsync(&mut st, &snap(&[("a", "1")], "r1", &["a"]), &mut a);
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    let mut n = dreq(Kind::Route, &[], &out[0].nonce);
    n.error_detail = Some(Status {
        code: 13,
        message: "no".into(),
        ..Default::default()
    });
    assert!(matches!(
        st.on_delta(&n, &a).unwrap()[0],
        Event::Nack { .. }
    ));
    assert!(st.plan(&s2, &mut a).is_empty());
}
// --- runtime (RTDS) ---

fn rt_node() -> Option<Node> {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind as VK};
    Some(Node {
        id: "rt".into(),
        cluster: "default".into(),
        metadata: Some(Struct {
            fields: [(
                RUNTIME_METADATA.to_string(),
                Value {
                    kind: Some(VK::BoolValue(true)),
                },
            )]
            .into(),
        }),
        ..Default::default()
    })
}

struct Built {
    fleet: crate::test_util::Fleet,
}

impl Built {
    fn new() -> Self {
        Built {
            fleet: crate::test_util::Fleet::new(),
        }
    }

    fn snap(&mut self, canary_weight: u32, canary_service: &str) -> Snapshot {
        let canary = format!(
            "apiVersion: ambassador/v1\nkind: Mapping\nname: canary\nprefix: /q/\nservice: {canary_service}\nweight: {canary_weight}\n"
        );
        let main =
            "apiVersion: ambassador/v1\nkind: Mapping\nname: main\nprefix: /q/\nservice: main\n";
        self.fleet
            .snapshot(&[("a.yaml", main), ("b.yaml", &canary)])
    }
}

fn rt_req(kind: Kind, version: &str, nonce: &str) -> DiscoveryRequest {
    let names: &[&str] = match kind {
        Kind::Route => &["canary-xds"],
        Kind::Runtime => &["canary-xds"],
        _ => &[],
    };
    DiscoveryRequest {
        node: rt_node(),
        ..req(kind, names, version, nonce)
    }
}

/// Plans and ACKs until nothing is left to send; returns the kinds sent, in order.
fn rt_sync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) -> Vec<Kind> {
    let mut sent = Vec::new();
    for _ in 0..10 {
        let out = st.plan(s, a);
        if out.is_empty() {
            return sent;
        }
        for r in out {
            sent.push(r.kind);
            st.on_sotw(&rt_req(r.kind, &r.version, &r.nonce), a)
                .unwrap();
        }
    }
    panic!("never in sync");
}

fn held_layer_of(st: &StreamState) -> Layer {
    st.held_layer()
}

#[test]
fn a_runtime_envoy_gets_the_layer_before_routes_and_weight_changes_over_rtds_only() {
    let mut b = Built::new();
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    for kind in Kind::ALL {
        st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
    }
    assert!(st.runtime());
    let s1 = b.snap(10, "canary");
    let sent = rt_sync(&mut st, &s1, &mut a);
    let rds = sent.iter().position(|k| *k == Kind::Route).unwrap();
    let rtds = sent.iter().position(|k| *k == Kind::Runtime).unwrap();
    assert!(rtds < rds, "{sent:?}");
    // The route table gives the primary 100%; the layer carries the canary's real split.
    // Keys sort by cluster name: canary (10%) before main (90%).
    assert_eq!(
        held_layer_of(&st).values().copied().collect::<Vec<_>>(),
        [1000, 9000]
    );

    // Weight changes: the runtime layer alone.
    let s2 = b.snap(50, "canary");
    assert_eq!(s2.routes_runtime.version, s1.routes_runtime.version);
    assert_ne!(s2.routes.version, s1.routes.version);
    assert_eq!(rt_sync(&mut st, &s2, &mut a), [Kind::Runtime]);
    let layer = held_layer_of(&st);
    assert_eq!(layer.values().copied().collect::<Vec<_>>(), [5000, 5000]);
    // Back to the default (the canary at 0%): the layer need not carry the route at all.
    assert_eq!(
        rt_sync(&mut st, &b.snap(0, "canary"), &mut a),
        [Kind::Runtime]
    );
    assert!(held_layer_of(&st).is_empty());
}

#[test]
fn a_structural_change_keeps_old_runtime_values_until_the_new_routes_are_held() {
    let mut b = Built::new();
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    for kind in Kind::ALL {
        st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
    }
    rt_sync(&mut st, &b.snap(10, "canary"), &mut a);
    rt_sync(&mut st, &b.snap(30, "canary"), &mut a);
    let before = held_layer_of(&st);
    assert_eq!(before.len(), 2);
    // The canary moves to another service: a new structure, a new prefix. The new cluster
    // and the layer with the new route's values go first, the old values kept beside them
    // for the routes Envoy still holds.
    let s3 = b.snap(40, "canary2");
    let out = st.plan(&s3, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Cluster, Kind::Runtime]
    );
    for r in &out {
        st.on_sotw(&rt_req(r.kind, &r.version, &r.nonce), &a)
            .unwrap();
    }
    let held = held_layer_of(&st);
    assert!(
        before.iter().all(|(k, v)| held.get(k) == Some(v)),
        "old values stay while the old routes are held: {held:?}"
    );
    assert_eq!(held.len(), 4, "{held:?}");
    let out = st.plan(&s3, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
    st.on_sotw(&rt_req(Kind::Route, &out[0].version, &out[0].nonce), &a)
        .unwrap();
    // Then the layer is pruned to the new route's values, and the old cluster goes.
    let rest = rt_sync(&mut st, &s3, &mut a);
    assert!(
        rest.contains(&Kind::Runtime) && rest.contains(&Kind::Cluster),
        "{rest:?}"
    );
    // canary2 (40%) before main (60%).
    assert_eq!(
        held_layer_of(&st).values().copied().collect::<Vec<_>>(),
        [4000, 6000]
    );
}

#[test]
fn overrides_for_routes_being_replaced_are_sent_before_the_routes() {
    // Two weight changes in a row while the first one's routes are in flight keep the
    // layer consistent with whichever routes Envoy holds.
    let mut b = Built::new();
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    for kind in Kind::ALL {
        st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
    }
    rt_sync(&mut st, &b.snap(10, "canary"), &mut a);
    // A new structure at 20, then (before Envoy took it) a weight change to 60: the layer
    // must carry 60 for the new prefix before the new routes are sent.
    let _ = b.snap(20, "canary2");
    let s = b.snap(60, "canary2");
    let sent = rt_sync(&mut st, &s, &mut a);
    let rds = sent.iter().position(|k| *k == Kind::Route).unwrap();
    let rtds = sent.iter().position(|k| *k == Kind::Runtime).unwrap();
    assert!(rtds < rds, "{sent:?}");
    // Keys sort by cluster name: canary2 (60%) before main (40%).
    assert_eq!(
        held_layer_of(&st).values().copied().collect::<Vec<_>>(),
        [6000, 4000]
    );
}

#[test]
fn an_envoy_without_the_layer_gets_every_weight_in_its_routes() {
    let mut b = Built::new();
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &b.snap(10, "canary"), &mut a);
    let out = st.plan(&b.snap(50, "canary"), &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
}

// --- found by the protocol fuzzer (`sim`, `proptests`) ---

#[test]
fn routes_wait_while_a_cluster_response_in_flight_removes_a_cluster_they_name() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    sync(
        &mut st,
        &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
        &mut a,
    );
    // b leaves: the routes go first, then the clusters without b.
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    assert_eq!(out[0].kind, Kind::Route);
    st.on_sotw(
        &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
        &a,
    )
    .unwrap();
    let cds = st.plan(&s2, &mut a);
    assert_eq!(decode(&cds[0]).resources.len(), 1, "b removed");
    // b comes back before Envoy took that: Envoy takes the removal first, so routes naming b
    // wait for b to be sent again and ACKed.
    let s3 = snap(&[("a", "1"), ("b", "1")], "r3", &["a", "b"]);
    assert!(
        st.plan(&s3, &mut a).is_empty(),
        "no route to b while b is being removed"
    );
    st.on_sotw(&req(Kind::Cluster, &[], &cds[0].version, &cds[0].nonce), &a)
        .unwrap();
    let out = st.plan(&s3, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Cluster]
    );
    st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
        .unwrap();
    let out = st.plan(&s3, &mut a);
    assert_eq!(
        out.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [Kind::Route]
    );
}

#[test]
fn delta_routes_wait_while_a_cluster_removal_is_in_flight() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Delta);
    dsync(
        &mut st,
        &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
        &mut a,
    );
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    assert_eq!(out[0].kind, Kind::Route);
    st.on_delta(&dreq(Kind::Route, &[], &out[0].nonce), &a)
        .unwrap();
    let cds = st.plan(&s2, &mut a);
    assert_eq!(ddecode(&cds[0]).removed_resources, ["b"]);
    let s3 = snap(&[("a", "1"), ("b", "1")], "r3", &["a", "b"]);
    assert!(
        st.plan(&s3, &mut a).is_empty(),
        "no route to b while b is being removed"
    );
    st.on_delta(&dreq(Kind::Cluster, &[], &cds[0].nonce), &a)
        .unwrap();
    let kinds: Vec<Kind> = dsync(&mut st, &s3, &mut a)
        .iter()
        .map(|r| Kind::from_type_url(&r.type_url).unwrap())
        .collect();
    assert_eq!(kinds, [Kind::Cluster, Kind::Route]);
}

#[test]
fn delta_a_refused_route_version_is_not_taken_as_held() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Delta);
    dsync(
        &mut st,
        &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
        &mut a,
    );
    // Routes that leave b, refused: Envoy keeps r1, which routes to b.
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    assert_eq!(out[0].kind, Kind::Route);
    let mut n = dreq(Kind::Route, &[], &out[0].nonce);
    n.error_detail = Some(Status {
        code: 3,
        message: "no".into(),
        ..Default::default()
    });
    st.on_delta(&n, &a).unwrap();
    // Whatever Envoy says next, b stays while Envoy's routes use it.
    for _ in 0..3 {
        for r in st.plan(&s2, &mut a) {
            let removed = ddecode(&r).removed_resources;
            assert!(!removed.contains(&"b".to_string()), "{removed:?}");
        }
        st.on_delta(&dreq(Kind::Cluster, &[], "stale"), &a).unwrap();
    }
    assert_eq!(
        st.types[index(Kind::Route)].acked.version("canary-xds"),
        Some("r1")
    );
}

#[test]
fn delta_refusals_do_not_pile_up() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Delta);
    dsync(&mut st, &snap(&[("a", "1")], "r0", &["a"]), &mut a);
    // An Envoy that refuses every new route table, for a hundred edits.
    for i in 1..=100 {
        let out = st.plan(&snap(&[("a", "1")], &format!("r{i}"), &["a"]), &mut a);
        assert_eq!(out.len(), 1);
        let mut n = dreq(Kind::Route, &[], &out[0].nonce);
        n.error_detail = Some(Status {
            code: 3,
            message: "no".into(),
            ..Default::default()
        });
        st.on_delta(&n, &a).unwrap();
    }
    assert!(st.types[index(Kind::Route)].rejected.len() <= 1);
    // And every new cluster, each under a new name, a hundred times.
    for i in 1..=100 {
        let name = format!("c{i}");
        let out = st.plan(&snap(&[("a", "1"), (&name, "1")], "r0", &["a"]), &mut a);
        assert_eq!(out[0].kind, Kind::Cluster);
        let mut n = dreq(Kind::Cluster, &[], &out[0].nonce);
        n.error_detail = Some(Status {
            code: 3,
            message: "no".into(),
            ..Default::default()
        });
        st.on_delta(&n, &a).unwrap();
    }
    assert!(st.types[index(Kind::Cluster)].rejected.len() <= 1);
}

#[test]
fn a_refused_set_is_not_sent_again_to_answer_names_asked_for_meanwhile() {
    let mut a = Archive::default();
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &snap(&[("a", "1")], "r1", &["a"]), &mut a);
    let before = st.types[index(Kind::Route)].last_nonce.clone().unwrap();
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    let out = st.plan(&s2, &mut a);
    // Envoy asks for a name nobody serves (crossing the response), then refuses the response.
    st.on_sotw(&req(Kind::Route, &["canary-xds", "other"], "", &before), &a)
        .unwrap();
    st.on_sotw(
        &DiscoveryRequest {
            resource_names: vec!["canary-xds".into(), "other".into()],
            ..nack(Kind::Route, &out[0].nonce)
        },
        &a,
    )
    .unwrap();
    assert!(
        st.plan(&s2, &mut a).is_empty(),
        "the very set Envoy refused is not sent again"
    );
}

mod reconnect;
