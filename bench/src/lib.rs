//! What the benchmark binaries share.

/// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it starts later, and
/// starts one thread that waits for either, runs `cleanup` with the signal's number (kill the
/// servers, delete the namespaces the bench created) and exits with status 130. Call it before
/// any other thread exists, so no other thread can receive the signals.
pub fn on_interrupt(cleanup: impl FnOnce(libc::c_int) + Send + 'static) {
    // SAFETY: plain sigset manipulation on a zeroed set; the mask is set before any other
    // thread exists (the caller's promise), so every thread inherits it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset and `sig` a valid out-pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        cleanup(sig);
        std::process::exit(130);
    });
}

/// Builds release binaries, each `(package, binary)`, in the repository's target directory, so a
/// lab benchmark never measures a stale router or node.
pub fn build_release(bins: &[(&str, &str)]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut cmd = std::process::Command::new("cargo");
    cmd.args(["build", "--release", "-q"]);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let status = cmd
        .current_dir(tests::repo_root())
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        anyhow::bail!("cargo build --release of {bins:?} failed");
    }
    Ok(())
}
