//! Background threads: a thread of its own in the idle scheduling class,
//! with a runtime of its own, for work that must take only what the front
//! line leaves (the store's writers, the routing stage's copies).

/// Runs the future `work` makes on a new thread in the idle scheduling
/// class, on a single-threaded runtime of its own. Threads and connections
/// started from it inherit the class.
pub fn spawn<F, Fut>(name: &str, work: F) -> std::io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lowest_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return tracing::error!(error = %e, thread = %label, "cannot start a runtime"),
            };
            runtime.block_on(work());
        })
        .map(|_| ())
}

/// The idle scheduling class for the calling thread (on Linux, per
/// thread; threads started from it inherit it): it runs only on a core
/// nothing else wants, and a waking relay thread takes the core from it at
/// once. Nice 19 alone is not enough for that: under EEVDF a running nice-19
/// thread keeps its core until its slice ends, which added a millisecond
/// or two to the relay's p99 while a copy was being filed. Falls back to
/// nice 19 where the idle class is refused.
fn lowest_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return;
    }
    let idle_error = std::io::Error::last_os_error();
    // SAFETY: setpriority takes no pointers; who = 0 is this thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        tracing::warn!(
            idle = %idle_error,
            error = %std::io::Error::last_os_error(),
            "cannot lower a background thread's priority"
        );
    }
}
