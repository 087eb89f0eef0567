//! A writer of the `newc` cpio format, the one the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Pure: entries in,
//! bytes out.

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Path without the leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path without the leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Path without the leading `/`.
        path: String,
        /// What it points at.
        target: String,
    },
    /// A character device node.
    CharDev {
        /// Path without the leading `/`.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// The archive of `entries` in order, with the `TRAILER!!!` entry at the end.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { path, mode } => {
                header(&mut out, ino, S_IFDIR | mode, 2, path, &[], (0, 0))
            }
            Entry::File { path, mode, data } => {
                header(&mut out, ino, S_IFREG | mode, 1, path, data, (0, 0))
            }
            Entry::Symlink { path, target } => header(
                &mut out,
                ino,
                S_IFLNK | 0o777,
                1,
                path,
                target.as_bytes(),
                (0, 0),
            ),
            Entry::CharDev { path, major, minor } => header(
                &mut out,
                ino,
                S_IFCHR | 0o600,
                1,
                path,
                &[],
                (*major, *minor),
            ),
        }
    }
    header(&mut out, 0, 0, 1, "TRAILER!!!", &[], (0, 0));
    out
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: fixed, so the archive depends on its inputs alone
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_entry_has_the_newc_layout() {
        let a = archive(&[Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: b"#!/bin/sh\n".to_vec(),
        }]);
        assert_eq!(&a[..6], b"070701");
        // mode field (second) and file size (seventh)
        assert_eq!(&a[14..22], b"000081ed");
        assert_eq!(&a[54..62], b"0000000a");
        // name size 5 ("init\0"), name right after the 110-byte header
        assert_eq!(&a[94..102], b"00000005");
        assert_eq!(&a[110..115], b"init\0");
        // 115 padded to 116, then the data
        assert_eq!(&a[116..126], b"#!/bin/sh\n");
        assert_eq!(a.len() % 4, 0);
        let trailer = a.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some_and(|p| p > 126));
    }

    #[test]
    fn symlinks_and_devices_carry_their_target_and_numbers() {
        let a = archive(&[
            Entry::Symlink {
                path: "bin/sh".into(),
                target: "busybox".into(),
            },
            Entry::CharDev {
                path: "dev/console".into(),
                major: 5,
                minor: 1,
            },
        ]);
        assert_eq!(&a[14..22], b"0000a1ff");
        let dev = a
            .windows(11)
            .position(|w| w == b"dev/console")
            .expect("device entry");
        let h = dev - 110;
        assert_eq!(&a[h + 14..h + 22], b"00002180");
        assert_eq!(&a[h + 78..h + 86], b"00000005");
        assert_eq!(&a[h + 86..h + 94], b"00000001");
    }
}
