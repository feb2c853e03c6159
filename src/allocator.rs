//! The process's allocator: mimalloc, asked for plain blocks wherever the
//! alignment Rust needs is one mimalloc gives every block.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every mimalloc block of at least this size has
/// (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator.
pub struct MiMalloc;

/// Turns transparent huge pages off for the process, first thing in
/// `main`. mimalloc reserves its arena with `MADV_HUGEPAGE`, and under the
/// kernel's usual `madvise` setting every first touch of a 2 MiB region then
/// faults in (and zeroes) a whole huge page: an empty run held 16–21 MiB
/// resident and spent about 1 ms more of its start-up on them, and a paced
/// run of hours gains nothing from them (measured: the same CPU either way).
/// With them off an empty run holds about 10 MiB. This is what mimalloc's own
/// `allow_thp` option does (`MIMALLOC_ALLOW_THP=0`), but mimalloc reads its
/// options when the process is loaded, before `main` could set one, and
/// `libmimalloc-sys` does not name that option; the kernel's per-process
/// switch is the same one, stable, and inherited only by children, which
/// sluice does not start. Nothing depends on it succeeding.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integers only, no
    // pointers; it sets one flag of this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc, aligned as asked: by mimalloc's
// guarantee for plain blocks, by its aligned calls otherwise; `mi_free`
// frees either kind.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        unsafe {
            if plain(size, align) {
                mi_malloc(size).cast()
            } else {
                mi_malloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        unsafe {
            if plain(size, align) {
                mi_zalloc(size).cast()
            } else {
                mi_zalloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        unsafe {
            if plain(new_size, align) {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, align).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's huge pages are off once asked (the flag the kernel
    /// keeps for it, read back).
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_turned_off() {
        no_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE takes no pointers and changes nothing.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }

    /// Every layout, including sizes that are not a multiple of their
    /// alignment (hash tables ask for those), gets a block aligned as asked,
    /// through allocation, zeroed allocation and growth.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [
                1, 3, 7, 8, 12, 16, 20, 24, 40, 100, 1000, 1500, 5000, 70_000,
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{size} {align}"
                    );
                    p.write_bytes(0xAB, size);
                    let grown = a.realloc(p, layout, size * 3 + 5);
                    assert!(
                        (grown as usize).is_multiple_of(align),
                        "realloc {size} {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xAB);
                    a.dealloc(grown, Layout::from_size_align(size * 3 + 5, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert!((z as usize).is_multiple_of(align), "zeroed {size} {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
