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
mod tests;
