//! The canary arithmetic: how the Mappings of one route share its traffic.
//!
//! All arithmetic is in integer hundredths of a percent, so a route's shares always add up to
//! exactly 10000. `Split` can only be built here and cannot hold any other sum, so later stages
//! trust it without checking.

use crate::model::mapping::{Bp, FULL, MappingId};

/// One Mapping of a route, as the arithmetic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    pub id: &'a MappingId,
    pub weight: Option<Bp>,
}

/// The shares of a route's Mappings, in the order they were given; they sum to exactly 10000.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    shares: Vec<Bp>,
}

impl Split {
    pub fn shares(&self) -> &[Bp] {
        &self.shares
    }
}

/// Something about a route's split worth telling its owner: it is computed, but perhaps not
/// what they meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remark {
    /// The only Mapping of a route has weight 0 and still receives everything.
    LoneZeroWeight,
    /// The only Mapping of a route has a weight below 100 and still receives everything.
    LoneWeight(Bp),
    /// Explicit weights use up 100%, so the Mappings without a weight receive nothing.
    UnweightedGetNothing,
    /// Explicit weights sum to less than 100% and no Mapping takes the rest: scaled up.
    ScaledUp { total: Bp },
}

/// Why a route's Mappings cannot share its traffic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The route has no Mapping that takes a share.
    #[error("the route has no Mapping that takes a share of its traffic")]
    Empty,
    /// Explicit weights add up to more than 100%.
    #[error("the weights add up to {}%, more than 100%", percent(*total))]
    OverFull { total: Bp },
    /// Every Mapping has weight 0 and none takes the rest.
    #[error("every weight is 0, so no Mapping would receive traffic")]
    AllZero,
}

/// Renders hundredths as a percentage without trailing zeros: 1000 -> "10", 435 -> "4.35".
pub fn percent(bp: Bp) -> String {
    let s = format!("{}.{:02}", bp / 100, bp % 100);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Computes the shares of a route's Mappings (shadows excluded).
///
/// 1. A lone Mapping gets 100%, whatever its weight.
/// 2. Weighted Mappings get exactly their weight; unweighted ones split the rest equally, the
///    leftover hundredths going one each to them in (namespace, name) order.
/// 3. Weights over 100% are an error; weights of exactly 100% leave the unweighted with 0.
/// 4. Weights under 100% with no unweighted Mapping are scaled up proportionally (largest
///    remainder, ties by (namespace, name)); all zero is an error.
pub fn split(members: &[Member<'_>]) -> Result<(Split, Option<Remark>), SplitError> {
    match members {
        [] => return Err(SplitError::Empty),
        [only] => {
            let remark = match only.weight {
                Some(0) => Some(Remark::LoneZeroWeight),
                Some(w) if w < FULL => Some(Remark::LoneWeight(w)),
                _ => None,
            };
            return Ok((Split { shares: vec![FULL] }, remark));
        }
        _ => {}
    }
    // Saturating: absurdly many Mappings must give "over 100%", not an overflow.
    let total: Bp = members
        .iter()
        .filter_map(|m| m.weight)
        .fold(0, Bp::saturating_add);
    if total > FULL {
        return Err(SplitError::OverFull { total });
    }
    let mut shares: Vec<Bp> = members.iter().map(|m| m.weight.unwrap_or(0)).collect();
    let mut unweighted: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight.is_none())
        .collect();
    unweighted.sort_by_key(|&i| members[i].id);

    let remark = if !unweighted.is_empty() {
        let rest = FULL - total;
        let n = unweighted.len() as Bp;
        for (rank, &i) in unweighted.iter().enumerate() {
            shares[i] = rest / n + Bp::from((rank as Bp) < rest % n);
        }
        (rest == 0).then_some(Remark::UnweightedGetNothing)
    } else if total == FULL {
        None
    } else if total == 0 {
        return Err(SplitError::AllZero);
    } else {
        scale_up(members, &mut shares, total);
        Some(Remark::ScaledUp { total })
    };
    debug_assert_eq!(shares.iter().sum::<Bp>(), FULL);
    Ok((Split { shares }, remark))
}

/// Scales weights summing to `total` up to exactly 10000 by the largest-remainder method.
fn scale_up(members: &[Member<'_>], shares: &mut [Bp], total: Bp) {
    let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(members.len());
    let mut assigned: Bp = 0;
    for (i, m) in members.iter().enumerate() {
        let exact = u64::from(m.weight.unwrap_or(0)) * u64::from(FULL);
        let floor = (exact / u64::from(total)) as Bp;
        shares[i] = floor;
        assigned += floor;
        remainders.push((exact % u64::from(total), i));
    }
    // Largest remainder first; ties by (namespace, name).
    remainders.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| members[a.1].id.cmp(members[b.1].id))
    });
    for &(_, i) in remainders.iter().take((FULL - assigned) as usize) {
        shares[i] += 1;
    }
}

#[cfg(test)]
mod tests {
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
}
