//! The order Envoy tries routes in: the most specific match first, as Ambassador orders them.

use std::cmp::{Ordering, Reverse};

use crate::model::mapping::RouteKey;

/// Envoy's matching order: higher precedence, longer prefix, more matchers, then text.
pub fn route_order(a: &RouteKey, b: &RouteKey) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// The sort key of `route_order`, computed once per route when sorting many.
type OrderKey<'a> = (
    Reverse<i32>,
    Reverse<usize>,
    Reverse<usize>,
    &'a str,
    Option<&'a str>,
    String,
    // Whatever is left decides too, so the order is total and never follows file order.
    &'a RouteKey,
);

pub(super) fn order_key(k: &RouteKey) -> OrderKey<'_> {
    (
        Reverse(k.precedence),
        Reverse(k.prefix.chars().count()),
        Reverse(k.matcher_count()),
        &k.prefix,
        k.method.as_deref(),
        k.matcher_text(),
        k,
    )
}
