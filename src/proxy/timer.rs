//! The proxy's timers, driven by a thread of their own.
//!
//! A tokio runtime with timers enabled does its time driver's bookkeeping at every park (lock
//! the wheel, read the clock, process what expired), whether or not a timer is set: about 650
//! instructions each time a worker goes to sleep, which at low concurrency is once or twice per
//! statement (callgrind, `bench/callgrind.sh`). A proxy's timers are rare events: login and
//! connect deadlines, the idle-client timeout, the shutdown grace, the kept-connection sweep.
//! So the workers' runtimes have no time driver, and every timer of the proxy is registered,
//! through these functions, with a small runtime on the `pgshape-timers` thread; one that fires
//! wakes its task across threads like any other waker.
//!
//! On a worker thread a `tokio::time` sleep or timeout made directly panics ("timers are
//! disabled"): use these. Work that sets timers inside a third-party client (`auth_query`'s
//! lookups with tokio-postgres) runs on that thread too, through [`spawn`].

use std::future::{Future, IntoFuture};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

static TIMERS: OnceLock<Handle> = OnceLock::new();

/// Starts the timer thread unless it runs already (it serves every proxy of the process and
/// lives as long as the process).
///
/// # Errors
/// The runtime or the thread could not be created.
pub(super) fn start() -> std::io::Result<()> {
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if TIMERS.get().is_none() {
        let _ = TIMERS.set(build()?);
    }
    Ok(())
}

fn build() -> std::io::Result<Handle> {
    // IO as well as time: [`spawn`]'s work opens connections.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("pgshape-timers".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

fn handle() -> &'static Handle {
    // A proxy starts the thread before its workers; only unit tests of sessions get here first.
    TIMERS.get_or_init(|| build().expect("cannot start the pgshape-timers thread"))
}

/// [`tokio::time::sleep`] on the timer thread.
pub(crate) fn sleep(duration: Duration) -> Sleep {
    let _timers = handle().enter();
    tokio::time::sleep(duration)
}

/// [`tokio::time::timeout`] on the timer thread; `future` still runs where it is polled.
pub(crate) fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    let _timers = handle().enter();
    tokio::time::timeout(duration, future)
}

/// [`tokio::time::timeout_at`] on the timer thread; `future` still runs where it is polled.
pub(crate) fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    let _timers = handle().enter();
    tokio::time::timeout_at(deadline, future)
}

/// [`tokio::time::interval`] on the timer thread.
pub(crate) fn interval(period: Duration) -> Interval {
    let _timers = handle().enter();
    tokio::time::interval(period)
}

/// Runs `future` on the timer thread, for work whose own timers this module cannot reach.
pub(crate) fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason for this module: timers work on a runtime without a time driver.
    #[test]
    fn timers_fire_on_a_runtime_without_timers() {
        start().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        runtime.block_on(async {
            sleep(Duration::from_millis(20)).await;
            let never = std::future::pending::<()>();
            assert!(timeout(Duration::from_millis(20), never).await.is_err());
            let deadline = Instant::now() + Duration::from_millis(20);
            assert_eq!(timeout_at(deadline, async { 7 }).await, Ok(7));
            let mut ticks = interval(Duration::from_millis(10));
            ticks.tick().await;
            ticks.tick().await;
            let on_timers = spawn(async { std::thread::current().name().map(str::to_owned) });
            assert_eq!(on_timers.await.unwrap().as_deref(), Some("pgshape-timers"));
        });
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    /// Code on a worker thread that calls `tokio::time` directly panics on the first use: only
    /// this module (and tests, on runtimes of their own) may.
    #[test]
    fn the_proxy_sets_its_timers_only_here() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
        let mut files = vec![dir];
        let mut offenders = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "timer.rs" || name == "tests.rs" || !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // The tests at the end of a file run on `#[tokio::test]` runtimes.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for call in [
                "sleep(",
                "sleep_until(",
                "timeout(",
                "timeout_at(",
                "interval(",
            ] {
                if code.contains(&format!("tokio::time::{call}")) {
                    offenders.push(format!("{}: tokio::time::{call}", path.display()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "use proxy::timer instead: {offenders:?}"
        );
    }
}
