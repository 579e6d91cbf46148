//! The live screen: poll, read keys, draw. Kept thin; what it shows is decided in [`View`].

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::{Key, Line, View, intervals};
use crate::admin::client::{AdminClient, ClientError};
use crate::admin::rows::{self, Row};

/// Why `pgshape top` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(
        "standard output is not a terminal: use --once (a table, or --format json) in pipes and scripts"
    )]
    NotATerminal,
}

/// Two polls `interval` apart: the entries over that interval and its length in seconds.
///
/// # Errors
/// When either poll fails.
pub fn poll_interval(
    client: &AdminClient,
    interval: Duration,
) -> Result<(Vec<Line>, f64), ClientError> {
    let before = rows::list_all(client)?;
    let start = Instant::now();
    std::thread::sleep(interval);
    let now = rows::list_all(client)?;
    let secs = start.elapsed().as_secs_f64();
    Ok((intervals(&before, &now, secs), secs))
}

/// Runs the live view until `q`, Esc or Ctrl-C. Refuses to start when standard output is not a
/// terminal, and polls once before taking over the screen so that a wrong address is reported
/// plainly.
///
/// # Errors
/// No terminal, an unreachable admin API at start, or a terminal I/O error.
pub fn run(client: &AdminClient, mut view: View, interval: Duration) -> Result<(), TopError> {
    if !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let first = rows::list_all(client)?;
    view.update(intervals(&first, &first, 0.0), 0.0);
    let mut terminal = ratatui::try_init()?;
    let result = screen(&mut terminal, client, &mut view, interval, first);
    ratatui::restore();
    result
}

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    client: &AdminClient,
    view: &mut View,
    interval: Duration,
    mut before: Vec<Row>,
) -> Result<(), TopError> {
    let mut at = Instant::now();
    let mut next = at + interval;
    loop {
        terminal.draw(|frame| frame.render_widget(&*view, frame.area()))?;
        if event::poll(next.saturating_duration_since(Instant::now()))? {
            if let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                // Raw mode turns Ctrl-C into a key press; it still means stop.
                if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
                    return Ok(());
                }
                if let Some(key) = key_of(k.code)
                    && !view.key(key)
                {
                    return Ok(());
                }
            }
            continue;
        }
        match rows::list_all(client) {
            Ok(now) => {
                let secs = at.elapsed().as_secs_f64();
                view.update(intervals(&before, &now, secs), secs);
                before = now;
                at = Instant::now();
            }
            Err(e) => view.error = Some(e.to_string()),
        }
        next = Instant::now() + interval;
    }
}

fn key_of(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}
