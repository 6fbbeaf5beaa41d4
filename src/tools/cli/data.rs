//! Data devices and files the tools read or write themselves (thin_trim,
//! thin_migrate, cache_writeback; opening one is `super::open_data`): its
//! size, the calls that zero or discard a byte range without writing it,
//! and the copy inside the kernel.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::io::AsRawFd;

/// `_IO(0x12, 119)`: discard a byte range of a block device.
const BLKDISCARD: libc::c_ulong = 0x1277;
/// `_IO(0x12, 127)`: write zeros over a byte range of a block device
/// (offloaded when the device can, e.g. a thin volume unmaps it).
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// The size in bytes of a regular file or block device.
pub fn size_of(f: &mut File) -> std::io::Result<u64> {
    f.seek(SeekFrom::End(0))
}

/// Hands a byte range of a block device to `ioctl` (BLKDISCARD, BLKZEROOUT).
fn range_ioctl(f: &File, request: libc::c_ulong, offset: u64, len: u64) -> std::io::Result<()> {
    let range = [offset, len];
    // SAFETY: both requests read two u64s from the pointer, which lives
    // through the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request as _, range.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Discards `len` bytes at `offset` of a block device.
pub fn discard(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    range_ioctl(f, BLKDISCARD, offset, len)
}

/// Zeros `len` bytes at `offset` of a block device (offsets and lengths in
/// whole 512-byte sectors).
pub fn zero_out(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    range_ioctl(f, BLKZEROOUT, offset, len)
}

/// Turns `len` bytes at `offset` of a regular file into a hole, the file
/// size kept.
pub fn punch_hole(f: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large");
    let off = libc::off_t::try_from(offset).map_err(|_| too_big())?;
    let len = libc::off_t::try_from(len).map_err(|_| too_big())?;
    // SAFETY: plain system call on an open descriptor.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Copies `len` bytes from `src` at `from` to `dst` at `to` inside the
/// kernel (copy_file_range: no copy through user memory, a reflink where
/// the file system shares extents). Regular files only: other kinds, or
/// file systems that cannot, fail at the first call with EXDEV, EINVAL,
/// EOPNOTSUPP or ENOSYS, before anything is copied (see [`no_copy_range`]).
pub fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> std::io::Result<()> {
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large");
    let mut off_in = libc::loff_t::try_from(from).map_err(|_| too_big())?;
    let mut off_out = libc::loff_t::try_from(to).map_err(|_| too_big())?;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: a plain syscall on open descriptors; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the source ended before the copy did",
            ));
        }
        left -= n as u64;
    }
    Ok(())
}

/// Whether [`copy_range`] failed because it cannot work here (the caller
/// then copies through memory).
pub fn no_copy_range(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}
