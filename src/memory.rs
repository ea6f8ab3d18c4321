//! How the process holds memory: the allocator, its purging, and the kernel's huge pages.
//!
//! mimalloc is the global allocator (`main.rs`). With glibc's malloc the broker's resident
//! size after a cut depended on fragmentation: a simulated day of 1,000 hosts left 55 to 245 MiB
//! resident for the same holdings, even with two arenas and `malloc_trim` after every cut.
//!
//! mimalloc hands freed memory back to the kernel ("purges" it) only after a delay (1 s), and
//! only when a thread next calls into it: a broker that goes quiet after a burst of ingest kept
//! 165–198 MiB in three of four simulated weeks; purged at once, 68 and 75 MiB (BENCHMARKS.md,
//! storage, "2026-12-03, mimalloc").
//!
//! Transparent huge pages are turned off for the process: mimalloc asks for them on its arenas,
//! and the kernel's khugepaged then fills a 2 MiB page around every small page still in use, so
//! an idle broker grew from 140 to 234 MiB in two minutes after a cut (measured, THP in
//! `madvise` mode). Where THP is `always`, khugepaged needs no asking, whatever the allocator
//! (not measured here).

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the -sys crate names no constant).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Sets up the above. Called first in `main`, before any thread starts. The environment's
/// `MIMALLOC_PURGE_DELAY` wins over the setting here; a kernel without the huge-page setting
/// leaves them as they are, with a note on stderr (logging is not set up yet).
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an integer option that mimalloc reads each time it
        // decides whether to purge; it may be called at any time from any thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: transparent huge pages stay on (prctl: {e})");
    }
}
