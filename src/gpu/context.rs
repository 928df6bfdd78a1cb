//! Device, adapter choice, buffers, cached pipelines and bind groups, and the recorder that
//! turns op calls into dispatches inside one open compute pass.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, Context, Result};

/// How a kernel sees one storage buffer binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// One WGSL entry point: the file it lives in (without `.wgsl`), its name, and its storage
/// bindings in order. Binding 0 of group 0 is always the uniform parameter block; the
/// storage buffers follow at bindings 1, 2, ….
#[derive(Debug)]
pub struct Kernel {
    pub file: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Access],
}

/// The WGSL source of a shader file, with shaders/common.wgsl prepended (and for a subgroup
/// file, its `shader_base`, whose declarations it uses).
pub fn shader_source(file: &str) -> Result<String> {
    let body = match file {
        "smoke" => include_str!("../../shaders/smoke.wgsl"),
        "activation" => include_str!("../../shaders/activation.wgsl"),
        "maxpool" => include_str!("../../shaders/maxpool.wgsl"),
        "avgpool" => include_str!("../../shaders/avgpool.wgsl"),
        "batchnorm" => include_str!("../../shaders/batchnorm.wgsl"),
        "reduce" => include_str!("../../shaders/reduce.wgsl"),
        "adam" => include_str!("../../shaders/adam.wgsl"),
        "sgd" => include_str!("../../shaders/sgd.wgsl"),
        "gather" => include_str!("../../shaders/gather.wgsl"),
        "matmul" => include_str!("../../shaders/matmul.wgsl"),
        "conv2d" => include_str!("../../shaders/conv2d.wgsl"),
        // the subgroup kernels on the declarations of their family's file (`shader_base`)
        "matmul_subgroup" => concat!(include_str!("../../shaders/matmul.wgsl"), "\n", include_str!("../../shaders/matmul_subgroup.wgsl")),
        "conv2d_subgroup" => concat!(include_str!("../../shaders/conv2d.wgsl"), "\n", include_str!("../../shaders/conv2d_subgroup.wgsl")),
        // one line per op family; keep in step with shaders/
        _ => return Err(anyhow!("unknown shader file {file}.wgsl")),
    };
    Ok(format!("{}\n{}", include_str!("../../shaders/common.wgsl"), body))
}

/// The shader file whose source `shader_source(file)` includes before `file`'s own, if any:
/// its entry points are in the module too, but they are that file's kernels.
pub fn shader_base(file: &str) -> Option<&'static str> {
    match file {
        "matmul_subgroup" => Some("matmul"),
        "conv2d_subgroup" => Some("conv2d"),
        _ => None,
    }
}

/// Which adapter to use, and how kernels are chosen on it. `name` picks the first adapter
/// whose name contains it (case insensitive); otherwise `WGPU_ADAPTER_NAME` does, otherwise
/// wgpu's default choice honouring `WGPU_POWER_PREF`. `WGPU_BACKEND` limits the backends
/// searched. `autotune` other than `Off` measures kernel choices on the adapter and caches
/// them under `autotune::default_cache_dir()` (see gpu::autotune).
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    pub name: Option<String>,
    pub autotune: super::autotune::Mode,
}

pub const NO_ADAPTER_HELP: &str = "no GPU adapter found. Install your GPU's Vulkan, Metal or DX12 driver, \
or a software Vulkan driver: on Debian/Ubuntu `sudo apt-get install mesa-vulkan-drivers` gives Mesa's \
lavapipe (set WGPU_BACKEND=vulkan to select it). `wgsl-cnn adapters` lists what wgpu can see.";

pub fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu can see, on the backends `WGPU_BACKEND` allows.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())))
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

async fn choose_adapter(inst: &wgpu::Instance, choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let wanted = choice.name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    if let Some(wanted) = wanted.filter(|w| !w.is_empty()) {
        let adapters = inst.enumerate_adapters(backends).await;
        let names: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted.to_lowercase()))
            .ok_or_else(|| {
                if names.is_empty() {
                    anyhow!("no adapter matches {wanted:?}: {NO_ADAPTER_HELP}")
                } else {
                    anyhow!("no adapter matches {wanted:?}; adapters found: {}", names.join("; "))
                }
            });
    }
    let opts = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
        ..Default::default()
    };
    match inst.request_adapter(&opts).await {
        Ok(a) => Ok(a),
        Err(_) => {
            // The default request skips CPU adapters on some platforms; take any we can see.
            let mut adapters = inst.enumerate_adapters(backends).await;
            // Prefer Vulkan/Metal/DX12 over GL when several exist.
            adapters.sort_by_key(|a| a.get_info().backend == wgpu::Backend::Gl);
            adapters.into_iter().next().ok_or_else(|| anyhow!(NO_ADAPTER_HELP))
        }
    }
}

/// Every adapter wgpu can see with its limits.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters_with_limits() -> Vec<(wgpu::AdapterInfo, wgpu::Limits)> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())))
        .into_iter()
        .map(|a| (a.get_info(), a.limits()))
        .collect()
}

/// The limits a device is opened with on an adapter offering `adapter`: WebGPU's defaults,
/// raised to what the adapter offers where it helps, lowered to it where it has less. Every
/// kernel must then fit them, or fall back (`kernels::check`).
pub fn device_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
        max_buffer_size: adapter.max_buffer_size,
        max_storage_buffers_per_shader_stage: adapter.max_storage_buffers_per_shader_stage.min(16),
        ..wgpu::Limits::default()
    }
    .or_worse_values_from(adapter)
}

/// Environment variable: `1` opens devices as a web page gets them from wgpu today, so that
/// native tests prove every kernel the page can pick: WebGPU's default limits (8 storage
/// buffers per stage, 16 KiB of workgroup memory, …), no subgroups (wgpu's WebGPU backend
/// does not offer them yet), no timestamps inside passes, and a tuner that defers as the
/// page's does (gpu::deferred_tuning).
pub const WEB_LIMITS_ENV: &str = "WGSL_CNN_WEB_LIMITS";

pub fn web_limits() -> bool {
    cfg!(not(target_arch = "wasm32")) && std::env::var(WEB_LIMITS_ENV).is_ok_and(|v| v == "1")
}

/// "name (backend, device type, driver)".
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}

/// A device buffer, or a view of one (`GpuContext::view`), with a process-unique id used as a
/// cache key for bind groups. Kernels see a view as a whole buffer of `len` elements.
#[derive(Debug)]
pub struct RawBuffer {
    pub id: u64,
    pub buffer: wgpu::Buffer,
    /// Where the view starts in `buffer`, in bytes (0 for a whole buffer).
    pub offset: u64,
    /// Elements (f32 or u32, 4 bytes each).
    pub len: usize,
}

impl RawBuffer {
    /// What a bind group entry binds: the view's bytes.
    fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            // Never zero-sized: wgpu rejects empty bindings (buffers have room for one element).
            size: std::num::NonZeroU64::new(self.len.max(1) as u64 * 4),
        })
    }
}

struct Recorder {
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

/// Timestamp query slots written around each dispatch while profiling (see
/// `GpuContext::start_profiling` / `stop_profiling`).
pub struct Profiler {
    pub query_set: wgpu::QuerySet,
    pub capacity: u32,
    /// Kernel label of each (begin, end) pair written so far.
    pub labels: Vec<&'static str>,
    /// The op label (`GpuContext::op_label`) current at each pair written so far.
    pub ops: Vec<Option<u32>>,
    /// Dispatches that found the query set full and went untimed.
    pub missed: u32,
    /// Each timed dispatch in a compute pass of its own, timed by the pass's timestamp writes
    /// (WebGPU's `timestamp-query`), where the device cannot write timestamps inside a pass.
    pub per_pass: bool,
}

/// One profiled dispatch: its kernel, the op label current when it was recorded, and its
/// begin/end timestamps in nanoseconds (on the device's clock; only differences mean anything).
#[derive(Clone, Debug)]
pub struct DispatchTime {
    pub kernel: &'static str,
    pub op: Option<u32>,
    pub begin_ns: f64,
    pub end_ns: f64,
}

/// A compiled entry point and the layout of its one bind group.
type Pipeline = (wgpu::ComputePipeline, wgpu::BindGroupLayout);

/// The maps looked up on every dispatch or op call hash with FxHash: SipHash and the key
/// vectors it hashed were a tenth of the host instructions of a training step.
pub(crate) type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Storage bindings a kernel may have (WebGPU's default `max_storage_buffers_per_shader_stage`).
const MAX_STORAGE_BINDINGS: usize = 8;
/// Bytes a kernel's uniform parameter block may have.
const MAX_PARAMS_BYTES: usize = 64;

/// What one cached bind group binds: the pipeline (by address), the buffers in binding order
/// (by id, unused slots 0; ids start at 1) and the uniform bytes (zero-padded; one pipeline
/// always has one parameter type, so padding cannot make two blocks equal). Fixed-size, so
/// that a dispatch's lookup allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindGroupKey {
    pipeline: usize,
    buffers: [u64; MAX_STORAGE_BINDINGS],
    params: [u8; MAX_PARAMS_BYTES],
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernels that do not fit `limits` and fall back (`kernels::check`, once).
    unfit: Vec<&'static Kernel>,
    modules: RefCell<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: RefCell<FastMap<(&'static str, &'static str), Rc<Pipeline>>>,
    bind_groups: RefCell<FastMap<BindGroupKey, Rc<wgpu::BindGroup>>>,
    uniforms: RefCell<HashMap<Vec<u8>, Rc<wgpu::Buffer>>>,
    scratch: RefCell<FastMap<&'static str, Rc<RawBuffer>>>,
    recorder: RefCell<Option<Recorder>>,
    next_id: Cell<u64>,
    pub profiler: RefCell<Option<Profiler>>,
    /// Dispatches recorded since creation (for tests and the benchmark).
    pub dispatches: Cell<u64>,
    /// Bytes of storage buffers created so far (what `train` reports at start).
    pub allocated_bytes: Cell<u64>,
    /// Command buffers submitted so far: work recorded now goes out with submit number
    /// `submits + 1`.
    pub submits: Cell<u64>,
    /// A caller-chosen tag stored with each profiled dispatch, so that the benchmark can
    /// group the dispatches of one op call however many an op uses (`set_op_label`).
    pub op_label: Cell<Option<u32>>,
    /// What the adapter offers (`limits`/`features` above are what the device was opened with).
    pub adapter_limits: wgpu::Limits,
    pub adapter_features: wgpu::Features,
    /// Chooses kernels by measurement where set (`set_tuner`; see gpu::autotune).
    tuner: RefCell<Option<Rc<super::autotune::Tuner>>>,
}

impl GpuContext {
    /// Opens a device on the chosen adapter (blocking: native only; the web awaits `open`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::open(choice))
    }

    /// Opens a device on the chosen adapter: the adapter and device requests are awaited, so
    /// the page never blocks.
    pub async fn open(choice: &AdapterChoice) -> Result<Self> {
        let inst = instance();
        let adapter = choose_adapter(&inst, choice).await?;
        let info = adapter.get_info();
        let alimits = adapter.limits();
        let web = web_limits();
        let limits = if web { wgpu::Limits::default().or_worse_values_from(&alimits) } else { device_limits(&alimits) };
        let (misfits, unfit) = super::kernels::check(&limits);
        if !misfits.is_empty() {
            return Err(anyhow!("{} cannot run every kernel:\n  {}", describe(&info), misfits.join("\n  ")));
        }
        // Subgroups where offered: the matmul and conv2d kernels that use them are candidates.
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES | wgpu::Features::SUBGROUP;
        if web {
            // WebGPU has neither subgroups in wgpu's backend nor timestamps inside passes.
            wanted.remove(wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        }
        let features = adapter.features() & wanted;
        let (device, queue) = adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgsl-cnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .with_context(|| format!("could not open a device on {}", describe(&info)))?;
        // The page's tuner defers (gpu::deferred_tuning): it cannot wait inside an op call, and
        // keeps its choices in the browser's storage, which the page reads and writes. With the
        // web's limits a native device does as the page does, its cache still a file.
        let defer = cfg!(target_arch = "wasm32") || web;
        let tuner = match choice.autotune {
            super::autotune::Mode::Off => None,
            _ if defer && !features.contains(wgpu::Features::TIMESTAMP_QUERY) => None,
            mode => {
                let dir = if cfg!(target_arch = "wasm32") { None } else { super::autotune::default_cache_dir() };
                if dir.is_none() && !cfg!(target_arch = "wasm32") {
                    eprintln!("note: no cache directory (set WGSL_CNN_CACHE_DIR); kernel choices are measured on every run");
                }
                let tuner = super::autotune::Tuner::new(mode, dir.as_deref(), &info);
                Some(Rc::new(if defer { tuner.deferring() } else { tuner }))
            }
        };
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            unfit,
            modules: RefCell::default(),
            pipelines: RefCell::default(),
            bind_groups: RefCell::default(),
            uniforms: RefCell::default(),
            scratch: RefCell::default(),
            recorder: RefCell::new(None),
            next_id: Cell::new(1),
            profiler: RefCell::new(None),
            dispatches: Cell::new(0),
            allocated_bytes: Cell::new(0),
            submits: Cell::new(0),
            op_label: Cell::new(None),
            adapter_limits: alimits,
            adapter_features: adapter.features(),
            tuner: RefCell::new(tuner),
        })
    }

    /// Lets kernel choices be measured on this adapter (`GpuContext::tuned`).
    pub fn set_tuner(&self, tuner: super::autotune::Tuner) {
        *self.tuner.borrow_mut() = Some(Rc::new(tuner));
    }

    pub fn tuner(&self) -> Option<Rc<super::autotune::Tuner>> {
        self.tuner.borrow().clone()
    }

    /// Runs `f` (the tuner's measurements) after the work recorded so far has finished, with
    /// the caller's state set aside (`unobserved`), and the bind groups of buffers created
    /// meanwhile forgotten (so that temporary buffers are freed).
    pub(crate) fn set_aside<T>(&self, f: impl FnOnce() -> T) -> T {
        self.finish();
        let first_new_id = self.next_id.get();
        let out = self.unobserved(|| {
            let out = f();
            self.finish();
            out
        });
        self.forget_bind_groups_since(first_new_id);
        out
    }

    /// Runs `f` with the dispatch and submit counters, the op label and any open profile set
    /// aside and restored after, so that the caller's counts and profile do not see its work.
    pub(crate) fn unobserved<T>(&self, f: impl FnOnce() -> T) -> T {
        let (dispatches, submits) = (self.dispatches.get(), self.submits.get());
        let label = self.op_label.take();
        let profile = self.profiler.borrow_mut().take();
        let out = f();
        self.dispatches.set(dispatches);
        self.submits.set(submits);
        self.op_label.set(label);
        *self.profiler.borrow_mut() = profile;
        out
    }

    /// Zero-filled buffers of `lens` elements for the tuner's measurements, not counted in
    /// `allocated_bytes`: they go with their bind groups, not part of the caller's memory.
    pub(crate) fn temporaries(&self, lens: &[usize]) -> Vec<Rc<RawBuffer>> {
        let temps: Vec<Rc<RawBuffer>> = lens.iter().map(|&n| self.buffer(n)).collect();
        let bytes: u64 = lens.iter().map(|&n| n.max(1) as u64 * 4).sum();
        self.allocated_bytes.set(self.allocated_bytes.get().saturating_sub(bytes));
        temps
    }

    /// The id the next buffer (or view) created will have: buffers created from now on have
    /// ids at least this.
    pub(crate) fn next_buffer_id(&self) -> u64 {
        self.next_id.get()
    }

    /// Forgets the cached bind groups that bind a buffer created since `first_id`
    /// (`next_buffer_id`), so that dropping such temporary buffers frees them.
    pub(crate) fn forget_bind_groups_since(&self, first_id: u64) {
        self.bind_groups.borrow_mut().retain(|key, _| key.buffers.iter().all(|&id| id < first_id));
    }

    /// True on CPU adapters (lavapipe, SwiftShader, WARP), which prefer register-blocked
    /// kernels without workgroup memory.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether kernel `k` fits the device's limits, from the `kernels::check` made at creation
    /// (the kernel choices ask on every op call).
    pub fn fits(&self, k: &'static Kernel) -> bool {
        !self.unfit.iter().any(|u| std::ptr::eq(*u, k))
    }

    /// Whether the device was opened with subgroups, which the kernels of
    /// `kernels::SUBGROUP_FILES` need.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// A zero-filled storage buffer of `len` 4-byte elements.
    pub fn buffer(&self, len: usize) -> Rc<RawBuffer> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.allocated_bytes.set(self.allocated_bytes.get() + (len.max(1) * 4) as u64);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            // Never zero-sized: wgpu rejects empty bindings.
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Rc::new(RawBuffer { id, buffer, offset: 0, len })
    }

    /// Elements `offset .. offset + len` of `buf` as a buffer of their own (same memory).
    /// `offset` must be a multiple of `view_alignment()`.
    pub fn view(&self, buf: &RawBuffer, offset: usize, len: usize) -> Rc<RawBuffer> {
        assert!(offset + len <= buf.len, "a view of {len} at {offset} into a buffer of {}", buf.len);
        assert!(offset.is_multiple_of(self.view_alignment()), "view offset {offset} is not a multiple of {}", self.view_alignment());
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Rc::new(RawBuffer { id, buffer: buf.buffer.clone(), offset: buf.offset + offset as u64 * 4, len })
    }

    /// The storage-buffer offset alignment of the device, in 4-byte elements.
    pub fn view_alignment(&self) -> usize {
        (self.limits.min_storage_buffer_offset_alignment as usize / 4).max(1)
    }

    /// Records a zero fill of `buf` (a transfer command: it ends the open compute pass).
    pub fn clear(&self, buf: &RawBuffer) {
        if buf.len > 0 {
            self.with_encoder(|enc| enc.clear_buffer(&buf.buffer, buf.offset, Some(buf.len as u64 * 4)));
        }
    }

    /// A buffer of at least `len` elements for an op's temporary data (transposed weights,
    /// split-K partial sums, a placeholder binding), kept for reuse: one per `tag`, grown
    /// when a larger one is asked for. Its contents are undefined; an op may rely on them
    /// only between its own dispatches (dispatches run in recording order, so a later op
    /// reusing the tag cannot disturb an earlier one).
    pub fn scratch(&self, tag: &'static str, len: usize) -> Rc<RawBuffer> {
        if let Some(b) = self.scratch.borrow().get(tag) {
            if b.len >= len {
                return b.clone();
            }
        }
        let b = self.buffer(len);
        self.scratch.borrow_mut().insert(tag, b.clone());
        b
    }

    /// Writes `data` to the start of `buf`, after the work recorded so far: a queued write
    /// lands before the next submission's commands, so recorded work is submitted first
    /// (else work recorded before the write, reading `buf`, would see the new data).
    pub fn write<T: bytemuck::Pod>(&self, buf: &RawBuffer, data: &[T]) {
        assert!(data.len() <= buf.len, "write of {} elements into a buffer of {}", data.len(), buf.len);
        if !data.is_empty() {
            self.submit();
            self.queue.write_buffer(&buf.buffer, buf.offset, bytemuck::cast_slice(data));
        }
    }

    /// Submits what is recorded, copies `buf` to a staging buffer and waits for it (blocking:
    /// native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read<T: bytemuck::Pod>(&self, buf: &RawBuffer) -> Vec<T> {
        pollster::block_on(self.read_async(buf))
    }

    /// Submits what is recorded, copies `buf` to a staging buffer and awaits its mapping.
    pub async fn read_async<T: bytemuck::Pod>(&self, buf: &RawBuffer) -> Vec<T> {
        let size = (buf.len * 4) as u64;
        if size == 0 {
            return Vec::new();
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.take_encoder();
        enc.copy_buffer_to_buffer(&buf.buffer, buf.offset, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.submits.set(self.submits.get() + 1);
        let slice = staging.slice(..);
        let mapped = super::mapped::Signal::default();
        slice.map_async(wgpu::MapMode::Read, mapped.on_mapped());
        let status = mapped.wait(&self.device).await;
        assert_eq!(status, super::mapped::Status::Done, "mapping a readback buffer failed (device lost?)");
        let view = slice.get_mapped_range().expect("readback buffer is mapped");
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        out
    }

    /// Ends the open pass and returns the recorder's encoder (or a fresh one).
    fn take_encoder(&self) -> wgpu::CommandEncoder {
        match self.recorder.borrow_mut().take() {
            Some(mut r) => {
                drop(r.pass.take());
                r.encoder
            }
            None => self.device.create_command_encoder(&Default::default()),
        }
    }

    /// Sends everything recorded so far to the queue, without waiting.
    pub fn submit(&self) {
        if self.recorder.borrow().is_some() {
            let enc = self.take_encoder();
            self.queue.submit([enc.finish()]);
            self.submits.set(self.submits.get() + 1);
        }
    }

    /// Submits and waits until the device has done it all, without blocking the page: the
    /// page calls this every few steps, so that work in flight stays bounded.
    pub async fn settle(&self) {
        self.submit();
        let done = super::mapped::Signal::default();
        self.queue.on_submitted_work_done(done.on_done());
        done.wait(&self.device).await;
    }

    /// Submits and waits until the device is idle.
    pub fn finish(&self) {
        self.submit();
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while waiting");
    }

    /// Runs `f` on the encoder with no pass open (for copies, query resolves).
    pub fn with_encoder(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut enc = self.take_encoder();
        f(&mut enc);
        *self.recorder.borrow_mut() = Some(Recorder { encoder: enc, pass: None });
    }

    fn pipeline(&self, k: &'static Kernel) -> Rc<Pipeline> {
        if let Some(p) = self.pipelines.borrow().get(&(k.file, k.entry)) {
            return p.clone();
        }
        let module = self
            .modules
            .borrow_mut()
            .entry(k.file)
            .or_insert_with(|| {
                let src = shader_source(k.file).expect("kernel names a known shader file");
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.file),
                    source: wgpu::ShaderSource::Wgsl(Cow::Owned(src)),
                })
            })
            .clone();
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, a) in k.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *a == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let bgl = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(k.entry),
            entries: &entries,
        });
        let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(k.entry),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(k.entry),
            // Every kernel writes the workgroup memory it reads first (checked per kernel; see
            // tests/portability.rs), and the zeroing costs: on GL it becomes an array
            // constructor that Mesa took over 400 s to compile for the tiled matmul.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                ..Default::default()
            },
            cache: None,
        });
        let p = Rc::new((pipeline, bgl));
        self.pipelines.borrow_mut().insert((k.file, k.entry), p.clone());
        p
    }

    /// Compiles a kernel's pipeline now (so that a benchmark can time compilation apart).
    pub fn prepare(&self, k: &'static Kernel) {
        self.pipeline(k);
    }

    fn uniform(&self, bytes: &[u8]) -> Rc<wgpu::Buffer> {
        if let Some(u) = self.uniforms.borrow().get(bytes) {
            return u.clone();
        }
        // Uniform blocks are padded to 16 bytes, as WGSL lays them out.
        let mut contents = bytes.to_vec();
        contents.resize(bytes.len().max(16).div_ceil(16) * 16, 0);
        let buf = wgpu::util::DeviceExt::create_buffer_init(
            &self.device,
            &wgpu::util::BufferInitDescriptor { label: Some("params"), contents: &contents, usage: wgpu::BufferUsages::UNIFORM },
        );
        let u = Rc::new(buf);
        self.uniforms.borrow_mut().insert(bytes.to_vec(), u.clone());
        u
    }

    /// Records one dispatch of `k` with uniform `params` and storage `buffers` (in the
    /// kernel's binding order) over `groups` workgroups. Pipelines, uniform buffers and bind
    /// groups are created on first use and reused after.
    pub fn dispatch<P: bytemuck::Pod>(&self, k: &'static Kernel, params: &P, buffers: &[&RawBuffer], groups: [u32; 3]) {
        assert_eq!(buffers.len(), k.bindings.len(), "{}::{} takes {} buffers", k.file, k.entry, k.bindings.len());
        const { assert!(size_of::<P>() <= MAX_PARAMS_BYTES, "a kernel's parameter block is at most MAX_PARAMS_BYTES") };
        assert!(buffers.len() <= MAX_STORAGE_BINDINGS, "{}::{}: more than {MAX_STORAGE_BINDINGS} storage buffers", k.file, k.entry);
        if groups.contains(&0) {
            return;
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        assert!(groups.iter().all(|&g| g <= max), "{}::{}: grid {groups:?} exceeds {max}", k.file, k.entry);
        let p = self.pipeline(k);
        let mut key = BindGroupKey { pipeline: Rc::as_ptr(&p) as usize, buffers: [0; MAX_STORAGE_BINDINGS], params: [0; MAX_PARAMS_BYTES] };
        for (slot, b) in key.buffers.iter_mut().zip(buffers) {
            *slot = b.id;
        }
        let bytes = bytemuck::bytes_of(params);
        key.params[..bytes.len()].copy_from_slice(bytes);
        let bg = self.bind_groups.borrow().get(&key).cloned();
        let bg = match bg {
            Some(bg) => bg,
            None => {
                let u = self.uniform(bytes);
                let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: u.as_entire_binding() }];
                for (i, b) in buffers.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() });
                }
                let bg = Rc::new(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(k.entry),
                    layout: &p.1,
                    entries: &entries,
                }));
                self.bind_groups.borrow_mut().insert(key, bg.clone());
                bg
            }
        };
        let mut rec = self.recorder.borrow_mut();
        let rec = rec.get_or_insert_with(|| Recorder {
            encoder: self.device.create_command_encoder(&Default::default()),
            pass: None,
        });
        let mut prof = self.profiler.borrow_mut();
        if prof.as_ref().is_some_and(|pr| pr.per_pass) {
            self.dispatch_in_own_pass(rec, prof.as_mut().unwrap(), k.entry, &p.0, &bg, groups);
            return;
        }
        let pass = rec
            .pass
            .get_or_insert_with(|| rec.encoder.begin_compute_pass(&Default::default()).forget_lifetime());
        let slot = prof.as_mut().and_then(|pr| {
            let i = pr.labels.len() as u32;
            let fits = 2 * i + 1 < pr.capacity;
            if fits {
                pr.labels.push(k.entry);
                pr.ops.push(self.op_label.get());
            } else {
                pr.missed += 1;
            }
            fits.then_some(i)
        });
        if let (Some(i), Some(pr)) = (slot, prof.as_ref()) {
            pass.write_timestamp(&pr.query_set, 2 * i);
        }
        pass.set_pipeline(&p.0);
        pass.set_bind_group(0, &*bg, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        if let (Some(i), Some(pr)) = (slot, prof.as_ref()) {
            pass.write_timestamp(&pr.query_set, 2 * i + 1);
        }
        self.dispatches.set(self.dispatches.get() + 1);
    }

    /// A dispatch in a compute pass of its own whose beginning and end write the next pair of
    /// timestamps (profiling without `TIMESTAMP_QUERY_INSIDE_PASSES`, as on the web).
    fn dispatch_in_own_pass(
        &self,
        rec: &mut Recorder,
        pr: &mut Profiler,
        entry: &'static str,
        pipeline: &wgpu::ComputePipeline,
        bg: &wgpu::BindGroup,
        groups: [u32; 3],
    ) {
        rec.pass = None; // ends the open pass
        let i = pr.labels.len() as u32;
        let fits = 2 * i + 1 < pr.capacity;
        if fits {
            pr.labels.push(entry);
            pr.ops.push(self.op_label.get());
        } else {
            pr.missed += 1;
        }
        let writes = fits.then(|| wgpu::ComputePassTimestampWrites {
            query_set: &pr.query_set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        });
        let mut pass = rec.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry), timestamp_writes: writes });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        drop(pass);
        self.dispatches.set(self.dispatches.get() + 1);
    }

    /// A grid of at least `groups` workgroups, folded into 2-D when it exceeds one
    /// dimension's limit. Kernels recover the flat group with `flat_group`.
    pub fn grid(&self, groups: usize) -> [u32; 3] {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }

    /// Forgets cached bind groups (they keep their buffers alive); tests that allocate many
    /// buffers call this between cases.
    pub fn clear_bind_groups(&self) {
        self.bind_groups.borrow_mut().clear();
    }

    // ---- profiling ------------------------------------------------------------------------

    /// True when the device can write timestamps between dispatches inside a compute pass.
    pub fn can_profile(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }

    /// True when the device can time compute passes (`TIMESTAMP_QUERY`, WebGPU's
    /// `timestamp-query`): `start_profiling_passes` then times each dispatch in a pass of its own.
    pub fn can_time_passes(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Tags the dispatches recorded from now on (None: untagged).
    pub fn set_op_label(&self, label: Option<u32>) {
        self.op_label.set(label);
    }

    /// Starts timing each dispatch recorded from now on, up to `max_dispatches` of them
    /// (at most 2048: a query set holds 4096 timestamps). Work recorded earlier is
    /// submitted first, so that it cannot land in the new query set.
    pub fn start_profiling(&self, max_dispatches: u32) -> Result<()> {
        anyhow::ensure!(self.can_profile(), "{} cannot write timestamps inside compute passes", self.info.name);
        self.start_profiler(max_dispatches, false);
        Ok(())
    }

    /// As `start_profiling`, on a device that can only time whole passes (the web): each
    /// dispatch recorded from now on runs in a compute pass of its own, timed at its beginning
    /// and end. The passes' boundaries add to what is timed, so use it where there is no other.
    pub fn start_profiling_passes(&self, max_dispatches: u32) -> Result<()> {
        anyhow::ensure!(self.can_time_passes(), "{} cannot write timestamps (no timestamp queries)", self.info.name);
        self.start_profiler(max_dispatches, true);
        Ok(())
    }

    pub(crate) fn start_profiler(&self, max_dispatches: u32, per_pass: bool) {
        let capacity = (2 * max_dispatches).clamp(2, wgpu::QUERY_SET_MAX_QUERIES);
        self.submit();
        let query_set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("dispatch timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        *self.profiler.borrow_mut() = Some(Profiler { query_set, capacity, labels: Vec::new(), ops: Vec::new(), missed: 0, per_pass });
    }

    /// Stops profiling, waits for the recorded work and returns one `DispatchTime` per
    /// timed dispatch, in recording order. Errors if some dispatches found the query set
    /// full (ask `start_profiling` for more) or profiling was not started.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn stop_profiling(&self) -> Result<Vec<DispatchTime>> {
        pollster::block_on(self.stop_profiling_async())
    }

    /// `stop_profiling` that awaits the device instead of blocking (natively it blocks).
    pub async fn stop_profiling_async(&self) -> Result<Vec<DispatchTime>> {
        let pr = self.profiler.borrow_mut().take().ok_or_else(|| anyhow!("profiling was not started"))?;
        self.read_profile_async(pr).await
    }

    /// The dispatch times a profile taken out of `profiler` recorded, once the device has
    /// written them (the work recorded so far is submitted).
    pub(crate) async fn read_profile_async(&self, pr: Profiler) -> Result<Vec<DispatchTime>> {
        anyhow::ensure!(pr.missed == 0, "{} dispatches went untimed: the query set holds {}", pr.missed, pr.capacity / 2);
        let count = 2 * pr.labels.len() as u32;
        if count == 0 {
            return Ok(Vec::new());
        }
        let size = count as u64 * wgpu::QUERY_SIZE as u64;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_encoder(|enc| {
            enc.resolve_query_set(&pr.query_set, 0..count, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, size);
        });
        self.submit();
        let slice = staging.slice(..);
        let mapped = super::mapped::Signal::default();
        slice.map_async(wgpu::MapMode::Read, mapped.on_mapped());
        let status = mapped.wait(&self.device).await;
        anyhow::ensure!(status == super::mapped::Status::Done, "device lost while reading timestamps");
        let ticks: Vec<u64> = bytemuck::cast_slice(&slice.get_mapped_range().context("timestamp buffer is mapped")?).to_vec();
        staging.unmap();
        let period = self.queue.get_timestamp_period() as f64;
        Ok(pr
            .labels
            .iter()
            .zip(&pr.ops)
            .enumerate()
            .map(|(i, (&kernel, &op))| DispatchTime {
                kernel,
                op,
                begin_ns: ticks[2 * i] as f64 * period,
                end_ns: ticks[2 * i + 1] as f64 * period,
            })
            .collect())
    }
}
