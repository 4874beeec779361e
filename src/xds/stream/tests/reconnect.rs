//! A reconnecting Envoy that already holds what it should gets nothing (issue 13): after a
//! restart of this server, or a switch to another replica serving the same files. Envoy
//! reapplies a route table and reloads its runtime on every response, even an unchanged one.

use super::*;

/// The versions a SotW Envoy in sync holds, per kind.
fn sotw_versions(st: &StreamState, kinds: &[Kind]) -> Vec<(Kind, String)> {
    kinds
        .iter()
        .map(|k| (*k, st.status(*k).acked.expect("acked")))
        .collect()
}

/// The first request of each kind on a new stream, with the version Envoy holds.
fn sotw_reconnect(
    versions: &[(Kind, String)],
    a: &Archive,
    runtime: bool,
) -> (StreamState, Vec<Event>) {
    let mut st = StreamState::new(Variant::Sotw);
    let mut events = Vec::new();
    for (kind, v) in versions {
        let r = if runtime {
            rt_req(*kind, v, "")
        } else {
            let names = names_of(*kind);
            req(*kind, names, v, "")
        };
        events.extend(st.on_sotw(&r, a).unwrap());
    }
    (st, events)
}

fn kinds(out: &[Response]) -> Vec<Kind> {
    out.iter().map(|r| r.kind).collect()
}

#[test]
fn sotw_a_reconnect_holding_every_current_version_is_sent_nothing() {
    let mut a = Archive::default();
    let s = snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]);
    // What this server published (a replica with the same files publishes the same sets).
    a.record_snapshot(&s);
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &s, &mut a);
    let held = sotw_versions(&st, &PLAIN);
    // Every order Envoy may send its first requests in.
    for rotate in 0..held.len() {
        let mut order = held.clone();
        order.rotate_left(rotate);
        let (mut again, events) = sotw_reconnect(&order, &a, false);
        assert!(events.is_empty(), "{events:?}");
        assert!(again.plan(&s, &mut a).is_empty(), "rotated by {rotate}");
        // It counts as in sync: what it was sent (before) is what it ACKed.
        for k in PLAIN {
            let t = again.status(k);
            assert_eq!(t.sent, t.acked, "{k}");
            assert!(!t.waiting_for_ack);
        }
        // And a change goes out as usual: routes alone.
        let s2 = snap(&[("a", "1"), ("b", "1")], "r2", &["a", "b"]);
        assert_eq!(kinds(&again.plan(&s2, &mut a)), [Kind::Route]);
    }
}

#[test]
fn sotw_a_runtime_envoy_holding_the_current_layer_is_not_sent_it_again() {
    let mut b = Built::new();
    let mut a = Archive::default();
    let s = b.snap(30, "canary");
    a.record_snapshot(&s);
    let mut st = StreamState::new(Variant::Sotw);
    for kind in Kind::ALL {
        st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
    }
    rt_sync(&mut st, &s, &mut a);
    assert!(!held_layer_of(&st).is_empty(), "the canary is in flight");
    let held = sotw_versions(&st, &Kind::ALL);
    let (mut again, events) = sotw_reconnect(&held, &a, true);
    assert!(events.is_empty(), "{events:?}");
    assert!(again.plan(&s, &mut a).is_empty());
    assert_eq!(held_layer_of(&again), held_layer_of(&st));
    // A weight change: the layer alone.
    let s2 = b.snap(50, "canary");
    a.next_generation();
    a.record_snapshot(&s2);
    assert_eq!(kinds(&again.plan(&s2, &mut a)), [Kind::Runtime]);
}

#[test]
fn sotw_a_reconnect_is_sent_only_the_kinds_that_changed_make_before_break() {
    // Envoy took routes that leave b, but not yet the clusters without b (make-before-break
    // in progress) when its server went away; the files did not change since.
    let mut a = Archive::default();
    let s1 = snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]);
    let s2 = snap(&[("a", "1")], "r2", &["a"]);
    a.record_snapshot(&s1);
    a.next_generation();
    a.record_snapshot(&s2);
    let held = vec![
        (Kind::Cluster, s1.clusters.version.clone()),
        (Kind::Listener, s2.listeners.version.clone()),
        (Kind::Route, s2.routes.version.clone()),
    ];
    for rotate in 0..held.len() {
        let mut order = held.clone();
        order.rotate_left(rotate);
        // As the server does: a plan after every request.
        let mut again = StreamState::new(Variant::Sotw);
        let mut sent = Vec::new();
        let mut answer = |st: &mut StreamState, a: &mut Archive| {
            for r in st.plan(&s2, a) {
                sent.push((r.kind, decode(&r).resources.len()));
                let names = names_of(r.kind);
                st.on_sotw(&req(r.kind, names, &r.version, &r.nonce), a)
                    .unwrap();
            }
        };
        for (kind, v) in &order {
            let names = names_of(*kind);
            again.on_sotw(&req(*kind, names, v, ""), &a).unwrap();
            answer(&mut again, &mut a);
        }
        answer(&mut again, &mut a);
        // Routes and listeners are current: not sent. Clusters go, without b, once the routes
        // Envoy holds are known (before that, it holds every cluster it may need: the set it
        // holds, which is not sent again).
        assert_eq!(sent, [(Kind::Cluster, 1)], "rotated by {rotate}");
        assert!(again.plan(&s2, &mut a).is_empty());
    }

    // The other way round: clusters current, routes not (a weight change while it was away).
    let s3 = snap(&[("a", "1")], "r3", &["a"]);
    a.next_generation();
    a.record_snapshot(&s3);
    let (mut again, _) = sotw_reconnect(&held[1..], &a, false);
    again
        .on_sotw(&req(Kind::Cluster, &[], &s2.clusters.version, ""), &a)
        .unwrap();
    assert_eq!(kinds(&again.plan(&s3, &mut a)), [Kind::Route]);
}

#[test]
fn sotw_a_reconnect_is_answered_when_it_asks_for_more_or_holds_what_we_never_sent() {
    let mut a = Archive::default();
    let s = snap(&[("a", "1")], "r1", &["a"]);
    a.record_snapshot(&s);
    let mut st = StreamState::new(Variant::Sotw);
    sync(&mut st, &s, &mut a);
    let held = sotw_versions(&st, &PLAIN);
    // A route table name the set it holds lacks: a new question, answered.
    let mut again = StreamState::new(Variant::Sotw);
    for (kind, v) in &held {
        let names: &[&str] = if *kind == Kind::Route {
            &["canary-xds", "other"]
        } else {
            &[]
        };
        again.on_sotw(&req(*kind, names, v, ""), &a).unwrap();
    }
    assert_eq!(kinds(&again.plan(&s, &mut a)), [Kind::Route]);
    // A version this server never sent (another replica's files, or before a restart
    // without --state-dir): answered, whatever it is.
    let mut again = StreamState::new(Variant::Sotw);
    for (kind, _) in &held {
        let names = names_of(*kind);
        again
            .on_sotw(&req(*kind, names, "from-elsewhere", ""), &a)
            .unwrap();
    }
    assert_eq!(kinds(&again.plan(&s, &mut a)), [Kind::Cluster]);
    // A new Envoy (no version): answered.
    let mut fresh = StreamState::new(Variant::Sotw);
    fresh.on_sotw(&req(Kind::Cluster, &[], "", ""), &a).unwrap();
    assert_eq!(kinds(&fresh.plan(&s, &mut a)), [Kind::Cluster]);
}

fn dfirst(kind: Kind, subscribe: &[&str], held: &[(&str, &str)]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        initial_resource_versions: held
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..dreq(kind, subscribe, "")
    }
}

/// What a delta Envoy in sync with `s` reports holding, per kind.
fn dheld(s: &Snapshot, kind: Kind) -> Vec<(String, String)> {
    s.set_for(kind, false)
        .items
        .iter()
        .map(|(n, r)| (n.clone(), r.version.clone()))
        .collect()
}

fn dreconnect(s: &Snapshot, a: &Archive) -> StreamState {
    let mut st = StreamState::new(Variant::Delta);
    for kind in PLAIN {
        let held = dheld(s, kind);
        let held: Vec<(&str, &str)> = held.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let names = names_of(kind);
        let ev = st.on_delta(&dfirst(kind, names, &held), a).unwrap();
        assert!(ev.is_empty(), "{ev:?}");
    }
    st
}

#[test]
fn delta_a_reconnect_holding_every_current_version_is_sent_nothing() {
    let mut a = Archive::default();
    let s = snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]);
    a.record_snapshot(&s);
    let mut again = dreconnect(&s, &a);
    assert!(again.plan(&s, &mut a).is_empty());
    for k in PLAIN {
        let t = again.status(k);
        assert_eq!(t.sent, t.acked, "{k}");
    }
    // A change: what changed, alone.
    let s2 = snap(&[("a", "1"), ("b", "1")], "r2", &["a", "b"]);
    let out = again.plan(&s2, &mut a);
    assert_eq!(kinds(&out), [Kind::Route]);
    assert_eq!(ddecode(&out[0]).resources.len(), 1);
}

#[test]
fn delta_a_reconnect_gets_only_what_differs_and_removals() {
    let mut a = Archive::default();
    let s1 = snap(&[("a", "1"), ("b", "1"), ("gone", "1")], "r1", &["a", "b"]);
    a.record_snapshot(&s1);
    let s2 = snap(&[("a", "1"), ("b", "2")], "r1", &["a", "b"]);
    a.next_generation();
    a.record_snapshot(&s2);
    let mut st = StreamState::new(Variant::Delta);
    // Clusters as s1 had them; routes and listeners current.
    st.on_delta(
        &dfirst(
            Kind::Route,
            &["canary-xds"],
            &[("canary-xds", &s2.routes.items["canary-xds"].version)],
        ),
        &a,
    )
    .unwrap();
    st.on_delta(&dfirst(Kind::Listener, &[], &[("l", "1")]), &a)
        .unwrap();
    st.on_delta(
        &dfirst(Kind::Cluster, &[], &[("a", "1"), ("b", "1"), ("gone", "1")]),
        &a,
    )
    .unwrap();
    let out = st.plan(&s2, &mut a);
    assert_eq!(kinds(&out), [Kind::Cluster]);
    let cds = ddecode(&out[0]);
    assert_eq!(
        cds.resources
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect::<Vec<_>>(),
        [("b", "2")]
    );
    // The routes Envoy holds are known and do not use `gone`.
    assert_eq!(cds.removed_resources, ["gone"]);
}

#[test]
fn delta_a_reconnect_is_answered_for_names_it_does_not_hold() {
    let mut a = Archive::default();
    let s = snap(&[("a", "1")], "r1", &["a"]);
    a.record_snapshot(&s);
    let mut st = StreamState::new(Variant::Delta);
    st.on_delta(&dfirst(Kind::Cluster, &[], &[("a", "1")]), &a)
        .unwrap();
    // It holds no route table (it never got one): the one it asks for is sent.
    st.on_delta(&dfirst(Kind::Route, &["canary-xds"], &[]), &a)
        .unwrap();
    let out = st.plan(&s, &mut a);
    assert_eq!(kinds(&out), [Kind::Route]);
    assert_eq!(ddecode(&out[0]).resources.len(), 1);
}
