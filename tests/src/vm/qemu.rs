//! The qemu command line and the console reader.
//!
//! `qemu-system-mipsel -M malta -cpu 24Kc` (TCG) with the Debian kernel and the
//! initramfs; one virtio-net NIC per TAP (the LAN first, then the WANs, each with the
//! MAC [`super::guest::mac`] gives it); the console (`ttyS0`) on stdout, the command
//! shell (`ttyS1`) and the human monitor on unix sockets. `-vga none` is needed: the
//! Malta board otherwise stops on a missing VGA ROM.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::sync::{Arc, Mutex};

use super::guest;

/// Guest memory in MiB.
pub const MEMORY_MIB: u32 = 256;

/// Everything the command line needs.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// TAP device per NIC, the LAN first.
    pub taps: Vec<String>,
    /// The command shell's socket.
    pub shell_socket: PathBuf,
    /// The monitor's socket.
    pub monitor_socket: PathBuf,
}

/// The netdev id of NIC `n` (the monitor's `set_link` takes it).
pub fn netdev_id(n: usize) -> String {
    guest::nic_name(n).replace('-', "")
}

/// The arguments after `qemu-system-mipsel`.
pub fn args(spec: &QemuSpec) -> Vec<String> {
    let mut a: Vec<String> = [
        "-M",
        "malta",
        "-cpu",
        "24Kc",
        "-m",
        &MEMORY_MIB.to_string(),
        "-vga",
        "none",
        "-display",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-serial",
        "stdio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("-serial".into());
    a.push(format!(
        "unix:{},server=on,wait=off",
        spec.shell_socket.display()
    ));
    a.push("-monitor".into());
    a.push(format!(
        "unix:{},server=on,wait=off",
        spec.monitor_socket.display()
    ));
    a.push("-kernel".into());
    a.push(spec.kernel.display().to_string());
    a.push("-initrd".into());
    a.push(spec.initrd.display().to_string());
    a.push("-append".into());
    a.push("console=ttyS0 panic=-1 quiet".into());
    for (n, tap) in spec.taps.iter().enumerate() {
        let id = netdev_id(n);
        a.push("-netdev".into());
        a.push(format!("tap,id={id},ifname={tap},script=no,downscript=no"));
        a.push("-device".into());
        a.push(format!("virtio-net-pci,netdev={id},mac={}", guest::mac(n)));
    }
    a
}

/// The console so far, shared with the thread that reads it.
pub type Console = Arc<Mutex<String>>;

/// Read qemu's stdout (the guest console) line by line into `console` and `log`.
pub fn read_console(stdout: ChildStdout, console: Console, log: &Path) {
    let mut file = std::fs::File::create(log).ok();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|k| k > 0) {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(text.as_bytes());
            }
            console
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&text);
            line.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tap_is_a_virtio_nic_with_its_mac() {
        let spec = QemuSpec {
            kernel: "/k".into(),
            initrd: "/i".into(),
            taps: vec!["vmtap0".into(), "vmtap1".into()],
            shell_socket: "/s".into(),
            monitor_socket: "/m".into(),
        };
        let a = args(&spec).join(" ");
        assert!(a.starts_with("-M malta -cpu 24Kc -m 256 -vga none"));
        assert!(a.contains("-netdev tap,id=brlan,ifname=vmtap0,script=no,downscript=no"));
        assert!(a.contains("-device virtio-net-pci,netdev=wan1,mac=52:54:00:4d:42:01"));
        assert!(a.contains("-serial unix:/s,server=on,wait=off -monitor unix:/m,server=on"));
    }
}
