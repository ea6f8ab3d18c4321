//! The broker's use of the C allocator (glibc on Linux).
//!
//! glibc gives each thread under contention an arena of its own (up to 8 per core) and keeps
//! memory freed into them: after the head's rows go to a block, the broker's resident size
//! stayed near the head's peak (245 MiB after a simulated day of 1,000 hosts, where 82 MiB is
//! what it holds with two arenas). Two arenas, and handing freed memory back after each cut,
//! keep it near what is in use (BENCHMARKS.md, "Memory does not grow with the retention").

/// Limits glibc to two arenas, unless `MALLOC_ARENA_MAX` is set (the operator's choice wins).
/// Called before the broker's threads start allocating.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tuning parameter of the allocator; M_ARENA_MAX takes
        // effect for arenas created from now on and is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Hands memory freed into glibc's arenas back to the operating system.
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory at the top of glibc's heaps and arenas to
    // the kernel; it touches no memory in use and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
