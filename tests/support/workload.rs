//! Statement templates with random constants, sent the way ORMs and drivers send them: the
//! statistics tests run the same shapes over both wire forms and count what came back.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::Rng;

/// How a statement goes over the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire {
    /// Query message, constants inlined (psycopg2, Django's default).
    Simple,
    /// Parse/Bind/Execute with `$n` (psycopg 3, asyncpg, JDBC).
    Extended,
}

/// A rendered template: the SQL, its `$n` parameters (extended wire) and the length of each
/// IN list.
pub struct Rendered {
    pub sql: String,
    pub params: Vec<i32>,
    pub lists: Vec<usize>,
}

/// Renders a template: `#` is an int constant in `lo..=hi`, `@` an IN list of 1..=30 of them.
/// The simple wire inlines them; the extended wire numbers them `$1, $2, ...` (cast `::int` in
/// the template where the server could not infer int4).
pub fn render(template: &str, rng: &mut Rng, wire: Wire, lo: i32, hi: i32) -> Rendered {
    let mut sql = String::new();
    let mut params = Vec::new();
    let mut lists = Vec::new();
    let mut push = |sql: &mut String, v: i32| match wire {
        Wire::Simple => sql.push_str(&v.to_string()),
        Wire::Extended => {
            params.push(v);
            sql.push_str(&format!("${}", params.len()));
        }
    };
    for c in template.chars() {
        match c {
            '#' => push(&mut sql, rng.range(lo, hi)),
            '@' => {
                let n = rng.range(1, 30) as usize;
                lists.push(n);
                for i in 0..n {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    push(&mut sql, rng.range(lo, hi));
                }
            }
            c => sql.push(c),
        }
    }
    Rendered { sql, params, lists }
}

/// Runs one rendered statement: the rows of its command tag(s), or the server's error.
pub async fn execute(
    client: &Client,
    sql: &str,
    params: &[i32],
    wire: Wire,
) -> Result<u64, tokio_postgres::Error> {
    match wire {
        Wire::Simple => client.simple_query(sql).await.map(|msgs| {
            msgs.iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .sum()
        }),
        Wire::Extended => {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(sql, &refs).await
        }
    }
}
