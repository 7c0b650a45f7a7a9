//! Queue steering: which queue of a multi-queue TUN device the kernel puts a
//! packet on, and which cores a worker runs on.
//!
//! Left alone, the kernel picks the queue by flow (the queue that last wrote
//! the flow's packets). With CPU steering, a two-instruction eBPF program
//! (`return smp_processor_id()`, attached with TUNSETSTEERINGEBPF; the kernel
//! takes it modulo the number of queues) puts a packet on the queue of the
//! core that sent it, and worker `i` is pinned to the cores whose packets
//! land on queue `i`. A sender's packet then wakes a worker on the sender's
//! own core, a cheap local wake-up, instead of one on another core, which a
//! virtual machine pays for with an inter-processor interrupt and a halted
//! virtual CPU coming back (35-70 µs of a ping's round trip on the
//! benchmark's VM, flow against CPU steering in bench/run's runs).

use super::tun::TunQueue;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// From linux/bpf.h and linux/if_tun.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// `struct bpf_insn`: opcode, registers (dst low nibble, src high), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The start of `union bpf_attr` as BPF_PROG_LOAD reads it (the kernel
/// takes the rest as zero).
#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `r0 = bpf_get_smp_processor_id(); return r0;` (a static: the kernel reads
/// it through a pointer).
static PROGRAM: [BpfInsn; 2] = [
    BpfInsn { code: 0x85, regs: 0, off: 0, imm: BPF_FUNC_GET_SMP_PROCESSOR_ID }, // BPF_JMP | BPF_CALL
    BpfInsn { code: 0x95, regs: 0, off: 0, imm: 0 },                             // BPF_JMP | BPF_EXIT
];

/// Loads the steering program (a [`Steerer`] keeps its descriptor, to attach
/// it again after `auto` has switched it off).
fn load_program() -> io::Result<OwnedFd> {
    // The crate's licence: the helper the program calls is not GPL-only.
    let license: &'static [u8] = b"MIT OR Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"natgw_cpu");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: PROGRAM.len() as u32,
        insns: PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: BPF_PROG_LOAD reads `size_of::<ProgLoadAttr>()` bytes of `attr`,
    // a live, fully initialised `#[repr(C)]` prefix of `union bpf_attr`; the
    // pointers in it (the program and the license, NUL-terminated) are
    // 'static. No log buffer is given, so the kernel writes nothing back.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of BPF_PROG_LOAD is a new descriptor
    // that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// CPU steering for a set of TUN devices: switched on and off while they run.
#[derive(Debug)]
pub struct Steerer {
    prog: OwnedFd,
    /// One descriptor per device (a duplicate of one of its queues: the
    /// ioctl acts on the device).
    devices: Vec<OwnedFd>,
}

impl Steerer {
    /// Loads the program for the devices of which `queues` holds a queue each.
    pub fn new<'a>(queues: impl IntoIterator<Item = &'a TunQueue>) -> io::Result<Steerer> {
        let prog = load_program()?;
        let devices = queues.into_iter().map(|q| q.fd().try_clone_to_owned()).collect::<io::Result<_>>()?;
        Ok(Steerer { prog, devices })
    }

    /// Puts packets on the queue of the sending core (`true`), or lets the
    /// kernel pick by flow again (`false`).
    pub fn by_cpu(&self, on: bool) -> io::Result<()> {
        let fd: libc::c_int = if on { self.prog.as_raw_fd() } else { -1 };
        for dev in &self.devices {
            // SAFETY: TUNSETSTEERINGEBPF reads one c_int (a program's
            // descriptor, or -1 to detach) through the pointer, which points
            // to a live local; the device takes its own reference to the
            // program.
            let rc = unsafe { libc::ioctl(dev.as_raw_fd(), TUNSETSTEERINGEBPF, &fd as *const libc::c_int) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The calling thread's id, for [`pin`] from another thread.
pub fn thread_id() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// The cores this process may run on.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    let allowed = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count()).filter(|&c| allowed.is_set(c).unwrap_or(false)).collect())
}

/// Lets thread `tid` run only on `cores`.
pub fn pin(tid: i32, cores: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &c in cores {
        set.set(c)?;
    }
    sched_setaffinity(Pid::from_raw(tid), &set)?;
    Ok(())
}
