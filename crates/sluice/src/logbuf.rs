//! `serve`'s log writer: log lines are appended to a shared buffer, and a
//! thread of its own writes what has gathered to stderr every few
//! milliseconds, in one write(2).
//!
//! A line costs the thread that logs it a lock and a copy; it wakes nobody
//! unless it is the first line after a drain. A writer fed through a
//! channel (tracing-appender's) is woken for every line: with two or three
//! lines per message that was the busiest wake-up in the server after the
//! sockets themselves, and the writer spent more time being scheduled than
//! writing.
//!
//! Nothing is dropped: past [`MAX_BUFFERED`] a logging thread waits for the
//! writer. The guard writes out what is left when `serve` returns.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather after the first one arrives.
const GATHER: Duration = Duration::from_millis(10);
/// A buffer this full is written at once, without waiting for `GATHER`.
const WRITE_AT: usize = 256 * 1024;
/// Past this, logging threads wait for the writer (stderr is blocked).
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// The writer sleeps on `arrived` with nothing to write.
    writer_idle: bool,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: the first line after a drain, a full buffer, a stop.
    arrived: Condvar,
    /// Wakes logging threads waiting for room.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct LogBuffer(Arc<Shared>);

/// Stops the writer and writes out what is buffered when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread (`log-writer`) writing to `out`.
pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogBuffer, Guard)> {
    let shared = Arc::new(Shared::default());
    let writer = shared.clone();
    let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || run(&writer, out))?;
    Ok((LogBuffer(shared.clone()), Guard { shared, thread: Some(thread) }))
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.lines.is_empty() && !state.stopping {
            state.writer_idle = true;
            state = shared.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.writer_idle = false;
        if !state.stopping && state.lines.len() < WRITE_AT {
            // Let the lines of the next few milliseconds join this write.
            state = shared
                .arrived
                .wait_timeout_while(state, GATHER, |s| s.lines.len() < WRITE_AT && !s.stopping)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut state.lines, &mut spare);
        let stopping = state.stopping;
        drop(state);
        shared.drained.notify_all();
        // Nowhere to report a failed write to stderr: the lines are lost,
        // the server goes on.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if stopping && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl Write for &LogBuffer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut state = shared.lock();
        while state.lines.len() >= MAX_BUFFERED && !state.stopping {
            state = shared.drained.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let before = state.lines.len();
        state.lines.extend_from_slice(line);
        let wake = state.writer_idle || (before < WRITE_AT && state.lines.len() >= WRITE_AT);
        if wake {
            state.writer_idle = false;
            drop(state);
            shared.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = &'a LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.arrived.notify_one();
        self.shared.drained.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read, as stderr's stand-in.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>, Arc<Mutex<usize>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            *self.1.lock().unwrap() += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_in_few_writes_and_the_guard_flushes() {
        let sink = Sink::default();
        let (buf, guard) = start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let buf = buf.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        (&buf).write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = out.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let want: Vec<String> = (0..5000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, want, "thread {t}'s lines, all and in order");
        }
        let writes = *sink.1.lock().unwrap();
        assert!(writes < 2000, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_lone_line_goes_out_without_a_stop() {
        let sink = Sink::default();
        let (buf, _guard) = start(sink.clone()).unwrap();
        (&buf).write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"one line\n");
    }
}
