//! What a device or file must be before the tools read or write it as
//! metadata, each refusal with its reason: the checks behind
//! [`super::FileDevice::open_with`], and [`same_file`] for a run's input
//! against its output.

use crate::BLOCK_SIZE;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    Block,
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A regular file or a block device; anything else is refused before it
/// is opened (opening a FIFO would wait for a writer).
pub(super) fn check_kind(path: &Path) -> io::Result<Kind> {
    let t = std::fs::metadata(path)?.file_type();
    let what = if t.is_file() {
        return Ok(Kind::Regular);
    } else if t.is_block_device() {
        return Ok(Kind::Block);
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(refused(format!(
        "it is {what}, not a block device or regular file"
    )))
}

/// For tools that read or write data devices themselves: `path` is a
/// regular file or a block device (the refusal says what it is instead).
pub fn check_file_or_block_device(path: &Path) -> io::Result<()> {
    check_kind(path).map(|_| ())
}

/// Metadata is whole 4 KiB blocks, at least one. A block device's tail
/// past its last whole block is ignored, as the kernel ignores it.
pub(super) fn check_size(bytes: u64, regular: bool) -> io::Result<()> {
    let bs = BLOCK_SIZE as u64;
    if bytes < bs {
        return Err(refused(format!(
            "it holds {bytes} bytes, less than one metadata block ({bs}): is this binary metadata?"
        )));
    }
    if regular && !bytes.is_multiple_of(bs) {
        return Err(refused(format!(
            "its size ({bytes} bytes) is not a multiple of the {bs}-byte metadata block: is this binary metadata?"
        )));
    }
    Ok(())
}

/// The kernel's answer to an open, in words: EBUSY on an exclusive open
/// means the kernel uses the device.
pub(super) fn explain_open(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::EBUSY) {
        return io::Error::new(
            io::ErrorKind::ResourceBusy,
            "the device is busy (an active pool holds it?): you cannot run this tool with these options on live metadata",
        );
    }
    e
}

/// Whether a device-mapper table (or another kernel user) holds the block
/// device open under `file`: its sysfs `holders` folder is not empty.
pub(super) fn has_holders(file: &File) -> bool {
    let Ok(m) = file.metadata() else {
        return false;
    };
    let rdev = m.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    std::fs::read_dir(format!("/sys/dev/block/{major}:{minor}/holders"))
        .is_ok_and(|mut d| d.next().is_some())
}

/// Whether `a` and `b` name the same file or device (one run must not read
/// what it writes). A path that does not exist yet is another file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    let device = |m: &std::fs::Metadata| {
        let t = m.file_type();
        (t.is_block_device() || t.is_char_device()).then(|| m.rdev())
    };
    match (device(&x), device(&y)) {
        (Some(p), Some(q)) => p == q,
        _ => x.dev() == y.dev() && x.ino() == y.ino(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BlockDevice, FileDevice};

    fn refusal(path: &Path) -> String {
        match FileDevice::open(path, false) {
            Ok(_) => panic!("{} opened", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_what_is_not_metadata() {
        let dir = tempfile::tempdir().unwrap();
        assert!(refusal(dir.path()).contains("a directory"));
        assert!(refusal(Path::new("/dev/null")).contains("a character device"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(refusal(&fifo).contains("a FIFO"));
        for (len, why) in [
            (0, "less than one"),
            (100, "less than one"),
            (5000, "multiple"),
        ] {
            let p = dir.path().join(format!("f{len}"));
            std::fs::File::create(&p).unwrap().set_len(len).unwrap();
            assert!(refusal(&p).contains(why), "{len}");
        }
        let p = dir.path().join("ok");
        std::fs::File::create(&p).unwrap().set_len(8192).unwrap();
        assert_eq!(FileDevice::open(&p, false).unwrap().nr_blocks(), 2);
        assert!(same_file(&p, &dir.path().join(".").join("ok")));
        assert!(!same_file(&p, &dir.path().join("f0")));
        assert!(!same_file(&p, &dir.path().join("none")));
    }
}
