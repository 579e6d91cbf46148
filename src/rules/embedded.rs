//! The shipped rules (`rules/*.toml`), compiled into the binary so an installed pgshape has
//! them without a rules directory. `--rules DIR` replaces them as a whole.

/// `(file name, TOML text)` of every shipped rule.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "cartesian-join.toml",
        include_str!("../../rules/cartesian-join.toml"),
    ),
    (
        "count-distinct-fanout.toml",
        include_str!("../../rules/count-distinct-fanout.toml"),
    ),
    (
        "distinct-over-fanout-join.toml",
        include_str!("../../rules/distinct-over-fanout-join.toml"),
    ),
    (
        "huge-in-list.toml",
        include_str!("../../rules/huge-in-list.toml"),
    ),
    (
        "leading-wildcard-like.toml",
        include_str!("../../rules/leading-wildcard-like.toml"),
    ),
    (
        "n-plus-one.toml",
        include_str!("../../rules/n-plus-one.toml"),
    ),
    (
        "not-in-subquery.toml",
        include_str!("../../rules/not-in-subquery.toml"),
    ),
    (
        "offset-pagination-deep.toml",
        include_str!("../../rules/offset-pagination-deep.toml"),
    ),
    (
        "order-by-random.toml",
        include_str!("../../rules/order-by-random.toml"),
    ),
    (
        "unbounded-select.toml",
        include_str!("../../rules/unbounded-select.toml"),
    ),
    (
        "update-or-delete-without-where.toml",
        include_str!("../../rules/update-or-delete-without-where.toml"),
    ),
];
