//! Unit tests of the weight rules: splits, remarks and errors, and their properties.

use super::*;
use proptest::prelude::*;

fn ids(n: usize) -> Vec<MappingId> {
    (0..n)
        .map(|i| MappingId {
            namespace: "default".into(),
            name: format!("m{i:02}"),
        })
        .collect()
}

fn run(weights: &[Option<Bp>]) -> Result<(Vec<Bp>, Option<Remark>), SplitError> {
    let ids = ids(weights.len());
    let members: Vec<Member<'_>> = ids
        .iter()
        .zip(weights)
        .map(|(id, &weight)| Member { id, weight })
        .collect();
    split(&members).map(|(s, r)| (s.shares, r))
}

#[test]
fn the_docs_example_is_90_10() {
    // qotm has no weight, qotmv2 has weight 10.
    assert_eq!(run(&[None, Some(1000)]), Ok((vec![9000, 1000], None)));
}

#[test]
fn a_lone_mapping_gets_everything() {
    assert_eq!(run(&[None]), Ok((vec![FULL], None)));
    assert_eq!(run(&[Some(FULL)]), Ok((vec![FULL], None)));
    assert_eq!(
        run(&[Some(0)]),
        Ok((vec![FULL], Some(Remark::LoneZeroWeight)))
    );
    assert_eq!(
        run(&[Some(1000)]),
        Ok((vec![FULL], Some(Remark::LoneWeight(1000))))
    );
}

#[test]
fn decimal_weights_are_exact() {
    assert_eq!(run(&[Some(29), None]), Ok((vec![29, 9971], None)));
    assert_eq!(run(&[Some(435), None]), Ok((vec![435, 9565], None)));
    assert_eq!(
        run(&[Some(3333), Some(3333), None]).unwrap().0,
        vec![3333, 3333, 3334]
    );
}

#[test]
fn the_remainder_is_split_equally_and_leftovers_go_in_name_order() {
    // 10000 / 3 = 3333 rest 1: the first by name gets the extra hundredth.
    assert_eq!(run(&[None, None, None]).unwrap().0, vec![3334, 3333, 3333]);
    // 9000 / 7 = 1285 rest 5.
    let (shares, _) = run(&[Some(1000), None, None, None, None, None, None, None]).unwrap();
    assert_eq!(shares, vec![1000, 1286, 1286, 1286, 1286, 1286, 1285, 1285]);
}

#[test]
fn leftovers_follow_names_not_input_order() {
    let ids = ids(3);
    let forward: Vec<Member<'_>> = ids.iter().map(|id| Member { id, weight: None }).collect();
    let backward: Vec<Member<'_>> = forward.iter().rev().cloned().collect();
    let (f, _) = split(&forward).unwrap();
    let (b, _) = split(&backward).unwrap();
    assert_eq!(f.shares(), &[3334, 3333, 3333]);
    assert_eq!(b.shares(), &[3333, 3333, 3334]);
}

#[test]
fn leftovers_go_in_namespace_then_name_order() {
    let ids = [("b", "a"), ("a", "z"), ("a", "b")].map(|(namespace, name)| MappingId {
        namespace: namespace.into(),
        name: name.into(),
    });
    let members: Vec<Member<'_>> = ids.iter().map(|id| Member { id, weight: None }).collect();
    // 10000 / 3 = 3333 rest 1: a.b gets it, then a.z, then b.a.
    assert_eq!(split(&members).unwrap().0.shares(), &[3333, 3333, 3334]);
    let scaled: Vec<Member<'_>> = ids
        .iter()
        .map(|id| Member {
            id,
            weight: Some(100),
        })
        .collect();
    assert_eq!(split(&scaled).unwrap().0.shares(), &[3333, 3333, 3334]);
}

#[test]
fn huge_groups_cannot_overflow() {
    let ids = ids(500_000);
    let members: Vec<Member<'_>> = ids
        .iter()
        .map(|id| Member {
            id,
            weight: Some(FULL),
        })
        .collect();
    assert!(matches!(split(&members), Err(SplitError::OverFull { .. })));
}

#[test]
fn over_100_is_an_error() {
    assert_eq!(
        run(&[Some(6000), Some(5000)]),
        Err(SplitError::OverFull { total: 11000 })
    );
    assert_eq!(
        run(&[Some(6000), Some(5000)]).unwrap_err().to_string(),
        "the weights add up to 110%, more than 100%"
    );
}

#[test]
fn exactly_100_leaves_unweighted_with_nothing() {
    assert_eq!(
        run(&[Some(FULL), None]),
        Ok((vec![FULL, 0], Some(Remark::UnweightedGetNothing)))
    );
}

#[test]
fn under_100_without_unweighted_scales_up() {
    assert_eq!(
        run(&[Some(2000), Some(3000)]),
        Ok((vec![4000, 6000], Some(Remark::ScaledUp { total: 5000 })))
    );
    // 1/3 each: 3333.33 -> leftover to the first by name.
    assert_eq!(
        run(&[Some(100), Some(100), Some(100)]).unwrap().0,
        vec![3334, 3333, 3333]
    );
    // Largest remainder wins over name order: 10/30/60 of 7% -> 1428.57, 4285.71, 4285.71..
    assert_eq!(
        run(&[Some(1), Some(3), Some(3)]).unwrap().0,
        vec![1428, 4286, 4286]
    );
}

#[test]
fn all_zero_is_an_error_but_zero_beside_unweighted_is_fine() {
    assert_eq!(run(&[Some(0), Some(0)]), Err(SplitError::AllZero));
    assert_eq!(run(&[Some(0), None]), Ok((vec![0, FULL], None)));
}

#[test]
fn percent_renders_without_trailing_zeros() {
    assert_eq!(percent(1000), "10");
    assert_eq!(percent(435), "4.35");
    assert_eq!(percent(50), "0.5");
    assert_eq!(percent(0), "0");
}

fn weights() -> impl Strategy<Value = Vec<Option<Bp>>> {
    prop::collection::vec(prop::option::of(0..=FULL), 1..=20)
}

proptest! {
    #[test]
    fn shares_sum_to_exactly_100_or_error(ws in weights()) {
        match run(&ws) {
            Ok((shares, _)) => prop_assert_eq!(shares.iter().sum::<Bp>(), FULL),
            Err(SplitError::OverFull { total }) => prop_assert!(total > FULL),
            Err(SplitError::AllZero) => prop_assert!(ws.iter().all(|w| *w == Some(0))),
            Err(SplitError::Empty) => prop_assert!(false, "not empty"),
        }
    }

    #[test]
    fn result_does_not_depend_on_input_order(ws in weights(), seed in any::<u64>()) {
        let ids = ids(ws.len());
        let members: Vec<Member<'_>> =
            ids.iter().zip(&ws).map(|(id, &weight)| Member { id, weight }).collect();
        let mut order: Vec<usize> = (0..members.len()).collect();
        // A deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let shuffled: Vec<Member<'_>> = order.iter().map(|&i| members[i].clone()).collect();
        match (split(&members), split(&shuffled)) {
            (Ok((a, ra)), Ok((b, rb))) => {
                for (pos, &i) in order.iter().enumerate() {
                    prop_assert_eq!(a.shares()[i], b.shares()[pos]);
                }
                prop_assert_eq!(ra, rb);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    #[test]
    fn explicit_weights_are_exact_beside_unweighted(
        mut ws in prop::collection::vec(prop::option::of(0..=FULL / 19), 2..=20)
    ) {
        ws[0] = None;
        let total: Bp = ws.iter().flatten().sum();
        prop_assert!(total <= FULL);
        let (shares, _) = run(&ws).unwrap();
        for (w, s) in ws.iter().zip(&shares) {
            if let Some(w) = w {
                prop_assert_eq!(w, s);
            }
        }
        // The unweighted differ by at most one hundredth.
        let un: Vec<Bp> = ws.iter().zip(&shares).filter(|(w, _)| w.is_none()).map(|(_, s)| *s).collect();
        prop_assert!(un.iter().max().unwrap() - un.iter().min().unwrap() <= 1);
    }

    #[test]
    fn scaling_keeps_proportions(ws in prop::collection::vec(1..=FULL / 20, 2..=20)) {
        let ws: Vec<Option<Bp>> = ws.into_iter().map(Some).collect();
        let total: u64 = ws.iter().flatten().map(|&w| u64::from(w)).sum();
        let (shares, _) = run(&ws).unwrap();
        for (w, s) in ws.iter().zip(&shares) {
            let exact = u64::from(w.unwrap()) * u64::from(FULL);
            let lo = exact / total;
            prop_assert!(u64::from(*s) == lo || u64::from(*s) == lo + 1);
        }
    }
}
