use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::Widget;

use super::*;
use crate::admin::rows::Bucket;

fn bucket(lower_ms: f64, count: u64) -> Bucket {
    Bucket {
        lower_ms,
        upper_ms: lower_ms * 1.015625,
        count,
    }
}

fn row(fp: &str, db: &str, calls: u64, total_ms: f64, hist: &[(f64, u64)]) -> Row {
    Row {
        fingerprint: fp.into(),
        query: format!("SELECT * FROM t{fp} WHERE id = $1"),
        database: db.into(),
        user: "web".into(),
        calls,
        rows: calls,
        total_ms,
        histogram: hist.iter().map(|&(l, c)| bucket(l, c)).collect(),
        ..Row::default()
    }
}

/// `a` busy and fast, `b` rare and slow in the interval, `c` idle, `d` new.
fn polls() -> (Vec<Row>, Vec<Row>) {
    let before = vec![
        row("a", "app", 100, 100.0, &[(1.0, 100)]),
        row("b", "app", 10, 10.0, &[(1.0, 10)]),
        row("c", "reports", 5, 5000.0, &[(1000.0, 5)]),
    ];
    let mut now = vec![
        row("a", "app", 300, 300.0, &[(1.0, 300)]),
        row("b", "app", 12, 220.0, &[(1.0, 10), (100.0, 2)]),
        before[2].clone(),
        row("d", "reports", 4, 8.0, &[(2.0, 4)]),
    ];
    now[1].errors.insert("57".into(), 1);
    (before, now)
}

fn view() -> View {
    let (before, now) = polls();
    let mut v = View::new("http://127.0.0.1:9187", Sort::Total);
    v.update(intervals(&before, &now, 2.0), 2.0);
    v
}

fn order(v: &View) -> Vec<&str> {
    v.visible()
        .iter()
        .map(|l| l.row.fingerprint.as_str())
        .collect()
}

#[test]
fn interval_figures_come_from_differences() {
    let v = view();
    let line = |fp: &str| v.all().iter().find(|l| l.row.fingerprint == fp).unwrap();
    let a = line("a");
    assert_eq!((a.calls, a.calls_per_s), (200, 100.0));
    assert_eq!(a.mean_ms, Some(1.0));
    let b = line("b");
    // Cumulatively b's p95 is ~1 ms; over the interval both calls were ~100 ms.
    assert!(b.p95_ms.unwrap() > 100.0, "{:?}", b.p95_ms);
    assert_eq!((b.errors, b.errors_per_s), (1, 0.5));
    let c = line("c");
    assert_eq!((c.calls, c.mean_ms, c.p95_ms), (0, None, None));
    assert_eq!(
        line("d").calls,
        4,
        "an entry new in the interval counts from zero"
    );
    // After a reset (calls went down) the entry counts from zero too.
    let reset = intervals(&polls().1, &[row("a", "app", 3, 3.0, &[(1.0, 3)])], 1.0);
    assert_eq!(reset[0].calls, 3);
}

#[test]
fn keys_sort_filter_select_and_quit() {
    let mut v = view();
    // Total time over the interval: b 210 ms, a 200 ms, d 8 ms, c idle.
    assert_eq!(order(&v), ["b", "a", "d", "c"]);
    assert!(v.key(Key::Char('c')));
    assert_eq!(order(&v), ["a", "d", "b", "c"]);
    v.key(Key::Char('p'));
    assert_eq!(order(&v)[0], "b");
    v.key(Key::Char('e'));
    assert_eq!(order(&v)[0], "b");
    v.key(Key::Char('d'));
    assert_eq!(v.database.as_deref(), Some("app"));
    assert_eq!(order(&v), ["b", "a"]);
    // Ties (no errors) by cumulative time.
    v.key(Key::Char('d'));
    assert_eq!(order(&v), ["c", "d"]);
    v.key(Key::Char('d'));
    assert_eq!((v.database.as_deref(), order(&v).len()), (None, 4));
    v.key(Key::Char('i'));
    assert_eq!(order(&v).len(), 3, "idle hidden");
    // The selection follows its entry when the order changes.
    v.key(Key::Char('c'));
    v.key(Key::Down);
    let picked = v.visible()[v.selected_index(&v.visible())]
        .row
        .fingerprint
        .clone();
    assert_eq!(picked, "d");
    v.key(Key::Char('t'));
    assert_eq!(order(&v), ["b", "a", "d"]);
    let visible = v.visible();
    assert_eq!(visible[v.selected_index(&visible)].row.fingerprint, "d");
    assert!(!v.key(Key::Char('q')));
    assert!(!v.key(Key::Esc));
}

fn screen(v: &View, width: u16, height: u16) -> String {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    v.render(area, &mut buf);
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn screen_shows_rows_selection_and_detail() {
    let mut v = view();
    v.key(Key::Down);
    let mut rules = v.lines[1].row.clone();
    rules.rules = vec!["unbounded-select".into()];
    v.lines[1].row = rules;
    let text = screen(&v, 140, 30);
    assert!(text.contains("sort: total time"), "{text}");
    assert!(
        text.contains("CALLS/S") && text.contains("P95 ms"),
        "{text}"
    );
    let at = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
    assert!(at("SELECT * FROM tb") < at("SELECT * FROM ta"), "{text}");
    // The second row (a) is selected: its rules and SQL are in the bottom pane.
    assert!(text.contains("rule hits: unbounded-select"), "{text}");
    assert!(text.contains("a  web@app  300 calls"), "{text}");
    assert!(text.contains("q quit"), "{text}");
    // A small terminal draws without panicking.
    let _ = screen(&v, 20, 5);
}

#[test]
fn once_table_and_json() {
    let mut v = view();
    v.key(Key::Char('c'));
    let text = render_text(&v, 3);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "title, header, three rows:\n{text}");
    assert!(lines[0].contains("over the last 2.0 s, sorted by calls"));
    assert!(lines[1].starts_with("FINGERPRINT") && lines[1].ends_with("QUERY"));
    assert!(
        lines[2].starts_with("a ") && lines[2].contains("100"),
        "{text}"
    );
    assert!(lines[2].ends_with("SELECT * FROM ta WHERE id = $1"));

    let json: serde_json::Value = serde_json::from_str(&render_json(&v, 10)).unwrap();
    assert_eq!(json["sort"], "calls");
    assert_eq!(json["interval_s"], 2.0);
    let shapes = json["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 4);
    assert_eq!(shapes[0]["fingerprint"], "a");
    assert_eq!(shapes[0]["interval"]["calls"], 200);
    assert_eq!(shapes[0]["cumulative"]["calls"], 300);
    assert_eq!(shapes[3]["interval"]["p95_ms"], serde_json::Value::Null);
}

#[test]
fn sort_names() {
    assert_eq!(Sort::parse("p95"), Some(Sort::P95));
    assert_eq!(Sort::parse("Total"), Some(Sort::Total));
    assert_eq!(Sort::parse("x"), None);
}
