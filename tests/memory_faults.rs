//! Issue 26: host memory the process may not have. A batch that does not fit the process's
//! limits (RLIMIT_AS here; a cgroup's memory.max likewise) is refused up front with the
//! largest batch that fits, an allocation the system refuses anyway is an error naming the
//! buffer and its size (never an abort), and a batch larger than the data set is clamped.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::temp_dir;
use wgsl_cnn::data::assets_subset_dir;
use wgsl_cnn::memlimit::{allocator_reserve, cgroup_headroom, tightest, Headroom};
use wgsl_cnn::model::{zoo, Model};
use wgsl_cnn::reference::Cpu;

/// Runs the binary (CPU backend) with `args`, under an address-space limit of `as_mib` MiB
/// when given (setrlimit in the child, as `prlimit --as` or `ulimit -v` would).
fn run_cpu(args: &[&str], as_mib: Option<u64>) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"));
    cmd.arg("--backend").arg("cpu").args(args);
    #[cfg(unix)]
    if let Some(mib) = as_mib {
        use std::os::unix::process::CommandExt;
        let bytes = (mib << 20) as libc::rlim_t;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let started = Instant::now();
    let out = cmd.output().expect("the binary runs");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Not a panic (101) or an abort (134, or killed by a signal), and no "panicked".
fn assert_clean_failure(out: &Output, took: Duration) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit {:?}, stderr: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("memory allocation of"), "{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_refused_allocation_is_an_error_naming_the_buffer_and_its_size() {
    // 2^36 images of LeNet-5 activations: petabytes, refused by any allocator. The old
    // `vec![0.0; len]` aborted the process here.
    let err = match Model::new(&mut Cpu::default(), &zoo::lenet5(), 1usize << 36, 0) {
        Ok(_) => panic!("a model of petabytes must not be built"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot hold lenet5 for batches of 68719476736"), "{err}");
    assert!(err.contains("the system refused") && err.contains("bytes) for a tensor of") && err.contains("f32 elements"), "{err}");
    assert!(err.contains("fits in what was granted"), "{err}");
}

#[test]
fn after_a_refusal_the_backend_does_nothing_until_it_is_reported() {
    use wgsl_cnn::backend::Backend;
    let be = &mut Cpu::default();
    let big = be.tensor(1usize << 50);
    assert!(be.refused_allocation().is_some_and(|r| r.bytes == 4 << 50));
    let small = be.tensor(4);
    be.write(&small, &[1.0; 4]);
    be.clear(&big);
    assert!(be.read(&small).is_empty(), "reads after a refusal are empty");
}

#[cfg(target_os = "linux")]
#[test]
fn a_batch_over_the_address_space_limit_is_refused_up_front() {
    // LeNet-5 with batches of 2,000 needs about 420 MiB; the process may map 400 MiB. The old
    // check compared with the machine's free memory and the process aborted (exit 134) at the
    // first allocation the limit refused.
    let dir = temp_dir("memory-faults", "rlimit");
    let data = assets_subset_dir();
    let save = dir.join("m.safetensors");
    let args = ["train", "--batch-size", "2000", "--epochs", "1", "--no-progress", "--data-dir", data.to_str().unwrap(), "--save", save.to_str().unwrap()];
    let (out, took) = run_cpu(&args, Some(400));
    assert_clean_failure(&out, took);
    let err = stderr(&out);
    assert!(err.contains("--batch-size 2000 is too large for lenet5") && err.contains("RLIMIT_AS") && err.contains("the largest that fits is --batch-size"), "{err}");
    assert!(!save.exists(), "nothing is saved");
}

#[cfg(target_os = "linux")]
#[test]
fn a_batch_the_limit_refuses_while_training_is_an_error_not_an_abort() {
    // Just under what the check allows at 400 MiB (its estimate leaves out the allocator's own
    // overhead): whether the check or the allocation refuses it, the process ends with an error.
    let dir = temp_dir("memory-faults", "rlimit-late");
    let data = assets_subset_dir();
    let save = dir.join("m.safetensors");
    for batch in ["1800", "1422"] {
        let args = ["train", "--batch-size", batch, "--epochs", "1", "--no-progress", "--data-dir", data.to_str().unwrap(), "--save", save.to_str().unwrap()];
        let (out, took) = run_cpu(&args, Some(400));
        if out.status.success() {
            continue; // it fitted after all on this machine
        }
        assert_clean_failure(&out, took);
        let err = stderr(&out);
        assert!(err.contains("too large") || (err.contains("the system refused") && err.contains("bytes)")), "{err}");
    }
}

#[test]
fn a_batch_larger_than_the_training_set_is_one_batch_of_the_whole_set() {
    let dir = temp_dir("memory-faults", "clamp");
    let data = assets_subset_dir();
    let save = dir.join("m.safetensors");
    let args = ["train", "--batch-size", "100000", "--limit-train", "64", "--epochs", "1", "--no-progress", "--data-dir", data.to_str().unwrap(), "--save", save.to_str().unwrap()];
    let (out, _) = run_cpu(&args, None);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("note: --batch-size 100000 is larger than the 64 training images: each epoch is one batch of 64"), "{err}");
    let meta = wgsl_cnn::checkpoint::load_metadata(&save).unwrap();
    assert_eq!(meta.get("batch_size").map(String::as_str), Some("64"), "the checkpoint records the batch trained with");
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn cgroup_v2_limits_of_the_group_and_its_parents_count() {
    let root = temp_dir("memory-faults", "cgroup-v2");
    let own = "0::/user.slice/job\n";
    // No limit anywhere: nothing to say.
    write(&root.join("user.slice/job"), "memory.max", "max\n");
    assert_eq!(cgroup_headroom(&root, own), None);
    // 1 GiB on the group, 512 MiB in use of which 100 MiB inactive page cache.
    write(&root.join("user.slice/job"), "memory.max", "1073741824\n");
    write(&root.join("user.slice/job"), "memory.current", "536870912\n");
    write(&root.join("user.slice/job"), "memory.stat", "anon 1000\ninactive_file 104857600\nactive_file 0\n");
    let h = cgroup_headroom(&root, own).unwrap();
    assert_eq!(h.bytes, (1 << 30) - (512 << 20) + (100 << 20));
    assert!(h.what.contains("cgroup v2 memory.max 1024 MiB"), "{}", h.what);
    // A tighter parent wins.
    write(&root.join("user.slice"), "memory.max", "629145600\n");
    write(&root.join("user.slice"), "memory.current", "536870912\n");
    assert_eq!(cgroup_headroom(&root, own).unwrap().bytes, (600 - 512) << 20);
}

#[test]
fn cgroup_v1_memory_limit_counts_and_its_unlimited_value_does_not() {
    let root = temp_dir("memory-faults", "cgroup-v1");
    let own = "5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n";
    let group = root.join("memory/docker/abc");
    write(&group, "memory.limit_in_bytes", "9223372036854771712\n");
    assert_eq!(cgroup_headroom(&root, own), None);
    write(&group, "memory.limit_in_bytes", "2147483648\n");
    write(&group, "memory.usage_in_bytes", "1073741824\n");
    write(&group, "memory.stat", "cache 0\ntotal_inactive_file 0\n");
    let h = cgroup_headroom(&root, own).unwrap();
    assert_eq!(h.bytes, 1 << 30);
    assert!(h.what.contains("cgroup v1 memory.limit_in_bytes 2048 MiB"), "{}", h.what);
}

#[test]
fn untouched_allocator_reserves_do_not_count_as_used_address_space() {
    let smaps = "\
7f0000000000-7f0040000000 rw-p 00000000 00:00 0 
Size:            1048576 kB
Rss:                2048 kB
7f0040000000-7f0040800000 rw-p 00000000 00:00 0 
Size:               8192 kB
Rss:                  16 kB
55e000000000-55e004000000 r-xp 00000000 fd:01 123 /usr/bin/wgsl-cnn
Size:              65536 kB
Rss:                1024 kB
";
    // Only the 1 GiB anonymous mapping counts (less what is resident); the 8 MiB stack and
    // the file mapping count as used in full.
    assert_eq!(allocator_reserve(smaps), (1048576 - 2048) * 1024);
    let a = Headroom { bytes: 5, what: "a".into() };
    let b = Headroom { bytes: 3, what: "b".into() };
    assert_eq!(tightest([a, b.clone()]), Some(b));
}
