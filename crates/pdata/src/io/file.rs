//! A regular file or block device, with positioned and vectored I/O.

use super::{out_of_range, BlockDevice};
use crate::{Block, BLOCK_SIZE};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest number of iovecs passed to one preadv/pwritev (Linux IOV_MAX).
const MAX_IOVECS: usize = 1024;

pub struct FileDevice {
    file: File,
    nr_blocks: AtomicU64,
    regular: bool,
}

impl FileDevice {
    /// Opens `path` (regular file or block device) for reading, or for
    /// writing when `writable`; a writer holds a block device exclusively
    /// (see [`FileDevice::open_with`]).
    pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
        Self::open_with(path, writable, writable)
    }

    /// Opens `path`, which must be a regular file or a block device of at
    /// least one block (a regular file: of whole blocks); its size is read
    /// once. With `exclusive`, a block device is opened with O_EXCL, which
    /// the kernel refuses while it uses the device (an active pool): the
    /// error says so. Anything else (a directory, FIFO, character device,
    /// an empty or short file) is refused at once with the reason.
    pub fn open_with(path: &Path, writable: bool, exclusive: bool) -> io::Result<Self> {
        let kind = super::open::check_kind(path)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(writable);
        if exclusive && kind == super::open::Kind::Block {
            opts.custom_flags(libc::O_EXCL);
        }
        let mut file = opts.open(path).map_err(super::open::explain_open)?;
        // Seeking to the end gives the size of block devices as well as files.
        let bytes = file.seek(SeekFrom::End(0))?;
        let regular = kind == super::open::Kind::Regular;
        super::open::check_size(bytes, regular)?;
        if !regular {
            // The kernel's buffered metadata I/O bypasses the block device's
            // page cache, so pages cached by an earlier reader may be stale:
            // drop them so that every read goes to the device.
            // SAFETY: a plain syscall on a file descriptor we own.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
        Ok(FileDevice {
            file,
            nr_blocks: AtomicU64::new(bytes / BLOCK_SIZE as u64),
            regular,
        })
    }

    /// True when the kernel holds this block device (a device-mapper table
    /// uses it: the pool is active), so what is read may change under us.
    pub fn held_by_kernel(&self) -> bool {
        !self.regular && super::open::has_holders(&self.file)
    }

    /// Creates (or truncates) a regular file of `nr_blocks` zeroed blocks.
    pub fn create(path: &Path, nr_blocks: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(nr_blocks * BLOCK_SIZE as u64)?;
        Ok(FileDevice {
            file,
            nr_blocks: AtomicU64::new(nr_blocks),
            regular: true,
        })
    }

    fn check_range(&self, first: u64, count: usize) -> io::Result<()> {
        let nr_blocks = self.nr_blocks();
        if first
            .checked_add(count as u64)
            .is_none_or(|end| end > nr_blocks)
        {
            return Err(out_of_range(first, count, nr_blocks));
        }
        Ok(())
    }
}

impl BlockDevice for FileDevice {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks.load(Ordering::Acquire)
    }

    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        if nr_blocks <= self.nr_blocks() {
            return Ok(());
        }
        if !self.regular {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the device has {} blocks; grow it to {} first",
                    self.nr_blocks(),
                    nr_blocks
                ),
            ));
        }
        self.file.set_len(nr_blocks * BLOCK_SIZE as u64)?;
        self.nr_blocks.store(nr_blocks, Ordering::Release);
        Ok(())
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        self.check_range(first, bufs.len())?;
        let mut loc = first;
        for chunk in bufs.chunks_mut(MAX_IOVECS) {
            let mut iov: Vec<libc::iovec> = chunk
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: BLOCK_SIZE,
                })
                .collect();
            transfer(&mut iov, loc * BLOCK_SIZE as u64, |iov, cnt, off| unsafe {
                // SAFETY: every iovec points into a live, exclusively borrowed block.
                libc::preadv(self.file.as_raw_fd(), iov, cnt, off)
            })?;
            loc += chunk.len() as u64;
        }
        Ok(())
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        self.check_range(first, bufs.len())?;
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        write_all_vectored_at(&self.file, &slices, first * BLOCK_SIZE as u64)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn start_writeback(&self, first: u64, count: u64) {
        let bs = BLOCK_SIZE as u64;
        // SAFETY: a plain syscall on our own descriptor. A hint: errors
        // (or no support) surface, if they matter, at the next flush.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                (first * bs) as libc::off64_t,
                (count * bs) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    fn next_data(&self, from: u64) -> u64 {
        let bs = BLOCK_SIZE as u64;
        if !self.regular || from >= self.nr_blocks() {
            return from;
        }
        // SAFETY: a plain syscall on our own descriptor; the file position
        // it moves is not used (all I/O is positioned).
        let off = unsafe {
            libc::lseek(
                self.file.as_raw_fd(),
                (from * bs) as libc::off_t,
                libc::SEEK_DATA,
            )
        };
        if off >= 0 {
            (off as u64 / bs).max(from)
        } else if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
            // Only a hole is left.
            self.nr_blocks()
        } else {
            // No SEEK_DATA here: read everything.
            from
        }
    }

    fn read_cached(&self, first: u64, buf: &mut [u8]) -> io::Result<bool> {
        if !buf.len().is_multiple_of(BLOCK_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a read of part of a block",
            ));
        }
        self.check_range(first, buf.len() / BLOCK_SIZE)?;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        loop {
            // SAFETY: the iovec points into `buf`, live and exclusively borrowed.
            let n = unsafe {
                libc::preadv2(
                    self.file.as_raw_fd(),
                    &iov,
                    1,
                    (first * BLOCK_SIZE as u64) as libc::off_t,
                    libc::RWF_NOWAIT,
                )
            };
            if n >= 0 {
                // Short: part of it is not cached (or the file ended).
                return Ok(n as usize == buf.len());
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                // EAGAIN: not cached; others: no RWF_NOWAIT here.
                _ => return Ok(false),
            }
        }
    }

    fn will_need(&self, first: u64, count: u64) {
        let bs = BLOCK_SIZE as u64;
        // SAFETY: a plain syscall on our own descriptor; only a hint.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                (first * bs) as libc::off_t,
                (count * bs) as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
}

/// Writes `bufs` one after the other to `file` from byte `offset` on, with
/// as few pwritev calls as IOV_MAX allows (for tools that copy data).
pub fn write_all_vectored_at(file: &File, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
    let mut offset = offset;
    for chunk in bufs.chunks(MAX_IOVECS) {
        let mut iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        transfer(&mut iov, offset, |iov, cnt, off| unsafe {
            // SAFETY: pwritev only reads through the iovecs, which point into live buffers.
            libc::pwritev(file.as_raw_fd(), iov, cnt, off)
        })?;
        offset += chunk.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    Ok(())
}

/// Runs a preadv/pwritev-style call until every byte is transferred from
/// byte `offset` on, resuming after short transfers and EINTR.
fn transfer(
    iov: &mut [libc::iovec],
    mut offset: u64,
    mut call: impl FnMut(*const libc::iovec, libc::c_int, libc::off_t) -> isize,
) -> io::Result<()> {
    let mut start = 0;
    while start < iov.len() {
        let n = call(
            iov[start..].as_ptr(),
            (iov.len() - start) as libc::c_int,
            offset as libc::off_t,
        );
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "device ended before the transfer did",
            ));
        }
        let mut done = n as usize;
        offset += done as u64;
        while done > 0 {
            let v = &mut iov[start];
            if done >= v.iov_len {
                done -= v.iov_len;
                start += 1;
            } else {
                // SAFETY: stays inside the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(done).cast() };
                v.iov_len -= done;
                done = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        let dev = FileDevice::create(&path, 8).unwrap();
        let a = [1u8; BLOCK_SIZE];
        let b = [2u8; BLOCK_SIZE];
        dev.write_blocks(3, &[&a, &b]).unwrap();
        dev.flush().unwrap();
        let mut x = [0u8; BLOCK_SIZE];
        let mut y = [0u8; BLOCK_SIZE];
        dev.read_blocks(3, &mut [&mut x, &mut y]).unwrap();
        assert_eq!(x, a);
        assert_eq!(y, b);
        assert!(dev.read_block(8, &mut x).is_err());
        let dev = FileDevice::open(&path, false).unwrap();
        assert_eq!(dev.nr_blocks(), 8);
    }

    #[test]
    fn read_cached_reads_what_is_in_the_page_cache_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileDevice::create(&dir.path().join("dev"), 8).unwrap();
        dev.write_blocks(2, &[&[5u8; BLOCK_SIZE], &[6u8; BLOCK_SIZE]])
            .unwrap();
        let mut buf = vec![0u8; 2 * BLOCK_SIZE];
        // Just written, so cached, unless this filesystem has no RWF_NOWAIT.
        if dev.read_cached(2, &mut buf).unwrap() {
            assert!(buf[..BLOCK_SIZE].iter().all(|&b| b == 5));
            assert!(buf[BLOCK_SIZE..].iter().all(|&b| b == 6));
        }
        assert!(dev.read_cached(7, &mut buf).is_err(), "beyond the end");
        assert!(
            dev.read_cached(0, &mut buf[..100]).is_err(),
            "part of a block"
        );
    }

    #[test]
    fn next_data_skips_holes_where_the_filesystem_says() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileDevice::create(&dir.path().join("sparse"), 1000).unwrap();
        dev.write_block(300, &[7u8; BLOCK_SIZE]).unwrap();
        // Without SEEK_DATA every block may hold data.
        assert!([0, 300].contains(&dev.next_data(0)));
        assert_eq!(dev.next_data(300), 300);
        assert!([301, 1000].contains(&dev.next_data(301)));
        assert_eq!(dev.next_data(1000), 1000);
    }
}
