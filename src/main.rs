//! The command line: parse, then call the library.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use wgsl_cnn::backend::Backend;
use wgsl_cnn::dataset::Dataset;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::Arch;
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::shapes::OptimizerConfig;
use wgsl_cnn::train::TrainConfig;

/// mimalloc instead of the system allocator: wgpu-core allocates and grows vectors for
/// every compute pass it encodes, and glibc's malloc spent about a third of a training
/// step's host instructions on them (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wgsl-cnn",
    version,
    about = "Train the seed's LeNet-5 (or its MLP, or its weight-tied NN) on MNIST with WGSL compute shaders (no subcommand = train)"
)]
struct Cli {
    /// Where the ops run: the GPU (WGSL shaders) or the plain-Rust CPU reference.
    #[arg(long, global = true, value_enum, default_value_t = BackendKind::Gpu)]
    backend: BackendKind,
    /// GPU adapter to use: the first whose name contains this text (else WGPU_ADAPTER_NAME,
    /// else wgpu's default choice, honouring WGPU_BACKEND and WGPU_POWER_PREF).
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// How kernels are chosen where several can run a shape: timed on this adapter at first
    /// use and cached (cached), timed again (refresh), or by fixed rules (off). The cache is
    /// a JSON file per adapter and driver in WGSL_CNN_CACHE_DIR, else the user cache directory.
    #[arg(long, global = true, value_enum, env = "WGSL_CNN_AUTOTUNE", default_value_t = AutotuneArg::Cached)]
    autotune: AutotuneArg,
    /// Directory holding the data set's four IDX files (gzip'd or raw); missing ones are
    /// downloaded there [default: data/mnist, or data/fashion-mnist].
    #[arg(long, global = true, env = "WGSL_CNN_DATA")]
    data_dir: Option<PathBuf>,
    /// The data set: MNIST digits, Zalando's Fashion-MNIST, Kuzushiji-MNIST, or any IDX set of 28×28 images under MNIST's file names (its classes from its labels).
    #[arg(long, global = true, value_enum, default_value_t = DatasetArg::Mnist)]
    dataset: DatasetArg,
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `train`'s options (`wgsl-cnn --epochs 1` trains one epoch).
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AutotuneArg {
    Cached,
    Refresh,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatasetArg {
    Mnist,
    FashionMnist,
    Kmnist,
    Idx,
}

impl Cli {
    fn dataset(&self) -> Dataset {
        match self.dataset {
            DatasetArg::Mnist => Dataset::Mnist,
            DatasetArg::FashionMnist => Dataset::FashionMnist,
            DatasetArg::Kmnist => Dataset::Kmnist,
            DatasetArg::Idx => Dataset::Idx,
        }
    }
    fn adapter(&self) -> AdapterChoice {
        use wgsl_cnn::gpu::autotune::Mode;
        let autotune = match self.autotune {
            AutotuneArg::Cached => Mode::Cached,
            AutotuneArg::Refresh => Mode::Refresh,
            AutotuneArg::Off => Mode::Off,
        };
        AdapterChoice { name: self.adapter.clone(), autotune }
    }
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| self.dataset().default_dir())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train with the seed's recipe (the default command), evaluating after each epoch.
    Train(TrainArgs),
    /// Test accuracy of a checkpoint (eval mode: BatchNorm uses its running statistics).
    Eval {
        #[arg(long, default_value = "model.safetensors")]
        checkpoint: PathBuf,
        /// The checkpoint's model [default: the one it records].
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        /// Images per forward pass [default: 1000, or the most the adapter's limits allow]
        #[arg(long)]
        batch_size: Option<usize>,
        /// Also write each wrongly classified test image here as a PNG
        /// (`<index>-true<t>-pred<p>.png`), and `overview.png` with the first 100.
        #[arg(long)]
        misclassified: Option<PathBuf>,
    },
    /// Classify picture files (PNG, JPEG, BMP) or directories of them: each is made into an
    /// MNIST-style 28×28 digit (a 28×28 picture is taken as it is); prints the class and the
    /// top 3 probabilities. Files that fail get an error line, and the exit code is 1.
    Predict {
        /// Picture files, or directories (their .png/.jpg/.jpeg/.bmp files).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, default_value = "model.safetensors")]
        checkpoint: PathBuf,
        /// The checkpoint's model [default: the one it records].
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        /// Files per forward pass.
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// One JSON record per file on stdout.
        #[arg(long)]
        json: bool,
    },
    /// One training step from a PyTorch state_dict and batch, writing logits, loss,
    /// gradients and the state after the optimizer's step (see docs/parity.md for the PyTorch side).
    Step {
        /// The model INIT holds [default: the one it records, else lenet5].
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
        /// state_dict in PyTorch's names (safetensors).
        #[arg(long)]
        init: PathBuf,
        /// `x` f32 [N,1,28,28] and `y` int64 [N] (safetensors).
        #[arg(long)]
        batch: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        opt: OptimizerArgs,
    },
    /// The architecture and the parameter table.
    Summary {
        /// lenet5, mlp, tied or a model file (.json).
        #[arg(long, value_name = "MODEL", default_value = "lenet5")]
        model: String,
    },
    /// Load MNIST (downloading missing files unless --offline), verify it and print what was loaded.
    /// Mirrors: WGSL_CNN_MNIST_MIRRORS (comma-separated base URLs) or the built-in list.
    Data {
        /// Never download: fail if a file is missing.
        #[arg(long)]
        offline: bool,
        /// Move damaged files aside (NAME.bad-TIME) first, so that they are downloaded again.
        #[arg(long)]
        repair: bool,
    },
    /// List the GPU adapters wgpu can see and run a tiny compute shader on the chosen one.
    Adapters,
    /// Serve the browser page (web/, built by scripts/web.sh) and the data set's files, so that
    /// a browser with WebGPU trains, predicts and benchmarks on its own GPU. Downloads the data
    /// set first when files are missing (unless --offline).
    Serve {
        /// The port (0: any free port; the address is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on: loopback by default; give 0.0.0.0 (or an interface's
        /// address) to let other machines reach the page.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The page's directory [default: ./web, else the one beside the sources].
        #[arg(long)]
        web_dir: Option<PathBuf>,
        /// Never download: fail if a data file is missing.
        #[arg(long)]
        offline: bool,
    },
    /// Time every kernel of the training step at the seed's shapes (GPU timestamps where the
    /// adapter has them), the step end to end, eval, and the CPU reference's step.
    /// Uses synthetic data (no download); always the GPU, plus the CPU reference.
    Bench(BenchArgs),
}

/// `--model`: a built-in model (lenet5, mlp, tied) or a model file (`.json`, see docs/models.md).
fn model_arch(name: &str) -> Result<Arch> {
    if wgsl_cnn::model::zoo::NAMES.contains(&name) {
        return wgsl_cnn::model::zoo::arch(name);
    }
    let path = std::path::Path::new(name);
    if name.ends_with(".json") || path.is_file() {
        return wgsl_cnn::model::file::load(path);
    }
    bail!("no model named {name:?}: the built-in models are {}, or give a model file (.json)", wgsl_cnn::model::zoo::NAMES.join(", "))
}

fn arch(name: Option<&str>) -> Result<Option<Arch>> {
    name.map(model_arch).transpose()
}

#[derive(Parser, Clone)]
struct BenchArgs {
    /// The model whose training step is timed.
    #[arg(long, value_name = "MODEL", default_value = "lenet5")]
    model: String,
    /// Images per training step.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Fewer repeats and one CPU reference step (under a minute on lavapipe).
    #[arg(long)]
    quick: bool,
    /// Timed repeats of each measurement [default: 20, --quick 5].
    #[arg(long)]
    repeats: Option<usize>,
    /// Untimed steps after the first (compiling) one [default: 2, --quick 1].
    #[arg(long)]
    warmup: Option<usize>,
    /// CPU reference train steps to time [default: 2, --quick 1].
    #[arg(long, conflicts_with = "no_cpu")]
    cpu_steps: Option<usize>,
    /// Skip the CPU reference (about 4 s per step at batch 100 on 2 cores).
    #[arg(long)]
    no_cpu: bool,
    /// How op calls are timed: timestamps inside compute passes where the adapter has
    /// them (auto), or the wall clock around a submit-and-wait per op call.
    #[arg(long, value_enum, default_value_t = TimerArg::Auto)]
    timer: TimerArg,
    /// Also write one flat JSON record per measurement here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure nothing: print the results table (Markdown, one row per run) of these
    /// `--json` files, or of the *.json files in these directories (e.g. results/).
    #[arg(long, num_args = 1.., value_name = "JSON")]
    table: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TimerArg {
    Auto,
    Timestamp,
    Wall,
}

#[derive(Parser, Clone, PartialEq)]
struct TrainArgs {
    /// The network: lenet5, mlp, tied or a model file (.json) [default: lenet5, or with --resume the checkpoint's].
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[command(flatten)]
    opt: OptimizerArgs,
    /// Seeds the initialisation and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Checkpoint written after each epoch (the optimizer's state goes next to it, *.optim.safetensors).
    #[arg(long, default_value = "model.safetensors")]
    save: PathBuf,
    /// Continue from a checkpoint saved by `train` (up to --epochs in total), with the
    /// optimizer it was trained with (its hyper-parameters may change).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Exit with an error if the last epoch's test accuracy (%) is below this (0 to 100).
    #[arg(long, allow_negative_numbers = true)]
    min_accuracy: Option<f64>,
    /// Print the loss line every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: usize,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Do not draw the curves picture (the metrics file is still written).
    #[arg(long)]
    no_plots: bool,
}

/// The optimizer flags `train` and `step` share: PyTorch's optimizers and their names.
#[derive(clap::Args, Clone, PartialEq)]
struct OptimizerArgs {
    /// The optimizer, as torch.optim's Adam, AdamW (decoupled weight decay) or SGD.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// The learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    lr: f32,
    /// SGD's momentum (0: none).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    momentum: f32,
    /// SGD's dampening of the momentum.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    dampening: f32,
    /// SGD's Nesterov momentum (needs --momentum above 0 and zero --dampening).
    #[arg(long)]
    nesterov: bool,
    /// Weight decay: SGD's and Adam's L2 term, AdamW's decoupled decay
    /// [default: 0, for adamw 0.01 as PyTorch].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f32>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerArg {
    Adam,
    Adamw,
    Sgd,
}

impl OptimizerArgs {
    /// The validated optimizer.
    fn config(&self) -> Result<OptimizerConfig> {
        let name = match self.optimizer {
            OptimizerArg::Adam => "adam",
            OptimizerArg::Adamw => "adamw",
            OptimizerArg::Sgd => "sgd",
        };
        OptimizerConfig::from_options(name, self.lr, self.momentum, self.dampening, self.nesterov, self.weight_decay).map_err(anyhow::Error::msg)
    }
}

impl Default for TrainArgs {
    fn default() -> Self {
        TrainArgs::parse_from(["train"])
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Runs `$body` with `$be` bound to the chosen backend.
macro_rules! with_backend {
    ($cli:expr, $be:ident => $body:expr) => {
        match $cli.backend {
            BackendKind::Gpu => {
                let $be = &mut Gpu::new(&$cli.adapter())?;
                eprintln!("backend: GPU, {}", $be.name());
                $body
            }
            BackendKind::Cpu => {
                let $be = &mut Cpu::default();
                eprintln!("backend: CPU reference");
                $body
            }
        }
    };
}

fn run(mut cli: Cli) -> Result<()> {
    // No subcommand means `train` with its defaults.
    if cli.command.is_some() && cli.train != TrainArgs::default() {
        bail!("training options before a subcommand are not used by it; put them after `train`, or leave the subcommand out");
    }
    let command = cli.command.take().unwrap_or_else(|| Command::Train(cli.train.clone()));
    match command {
        Command::Train(args) => with_backend!(cli, be => train(be, &cli, &args)),
        Command::Eval { checkpoint, model, batch_size, misclassified } => {
            let arch = arch(model.as_deref())?;
            with_backend!(cli, be => eval(be, &cli, &checkpoint, arch.as_ref(), batch_size, misclassified.as_deref()))
        }
        Command::Predict { inputs, checkpoint, model, batch_size, json } => {
            let arch = arch(model.as_deref())?;
            let names = cli.dataset().class_names();
            with_backend!(cli, be => predict(be, &inputs, &checkpoint, arch.as_ref(), batch_size, json, names))
        }
        Command::Step { model, init, batch, out, opt } => {
            let opt = opt.config()?;
            let arch = arch(model.as_deref())?;
            with_backend!(cli, be => pollster::block_on(wgsl_cnn::step::run(be, arch.as_ref(), &init, &batch, &out, &opt)))
        }
        Command::Summary { model } => {
            print!("{}", wgsl_cnn::model::summary::summary(&model_arch(&model)?));
            Ok(())
        }
        Command::Data { offline, repair } if cli.dataset() == Dataset::Mnist => wgsl_cnn::data::data_command(&cli.data_dir(), offline, repair),
        Command::Data { offline, .. } => {
            let data = cli.dataset().load(&cli.data_dir(), offline)?;
            println!("{}", data.report);
            Ok(())
        }
        Command::Adapters => adapters(&cli.adapter()),
        Command::Serve { port, host, web_dir, offline } => serve(&cli, port, &host, web_dir, offline),
        Command::Bench(args) => bench(&cli, &args),
    }
}

fn load_data(cli: &Cli) -> Result<wgsl_cnn::data::Mnist> {
    cli.dataset().load(&cli.data_dir(), false)
}

fn train<B: Backend + 'static>(be: &mut B, cli: &Cli, args: &TrainArgs) -> Result<()> {
    if let Some(min) = args.min_accuracy {
        if !(0.0..=100.0).contains(&min) {
            bail!("--min-accuracy {min} is not allowed: it is a test accuracy in percent, from 0 to 100");
        }
    }
    if args.log_every == 0 {
        bail!("--log-every must be at least 1");
    }
    let optimizer = args.opt.config()?;
    let data = load_data(cli)?;
    let cfg = TrainConfig {
        model: arch(args.model.as_deref())?,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.opt.lr,
        optimizer,
        seed: args.seed,
        limit_train: args.limit_train,
        save: Some(args.save.clone()),
        resume: args.resume.clone(),
        log_every: args.log_every,
        progress: !args.no_progress,
        plots: !args.no_plots,
    };
    let reports = wgsl_cnn::train::train(be, &data, &cfg)?;
    println!("saved {}", args.save.display());
    if let (Some(min), Some(last)) = (args.min_accuracy, reports.last()) {
        if last.accuracy() < min {
            bail!("test accuracy {:.2} % is below the required {min} %", last.accuracy());
        }
    }
    Ok(())
}

fn eval<B: Backend + 'static>(
    be: &mut B,
    cli: &Cli,
    checkpoint: &Path,
    arch: Option<&Arch>,
    batch_size: Option<usize>,
    misclassified: Option<&Path>,
) -> Result<()> {
    use wgsl_cnn::mistakes::{evaluate_split_detailed, write_mistakes};
    use wgsl_cnn::nn::{sizer, Capacity, EVAL_BATCH};
    if batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    let data = load_data(cli)?;
    // An eval-only model: a one-sample training copy (never trained) and the eval batch.
    let mut capacity = Capacity::with_eval(1, batch_size.unwrap_or(EVAL_BATCH));
    if let Some(budget) = be.memory_budget() {
        let n = data.test.count as u64;
        let arch = wgsl_cnn::model::state::arch_for(checkpoint, arch)?;
        let test_buffers = [n * wgsl_cnn::model::IMAGE_PIXELS as u64, n * 4, n * 4];
        match batch_size {
            Some(b) => sizer::check_batch(&arch, b, &budget, &test_buffers, "--batch-size")?,
            None => capacity = Capacity::with_eval(1, sizer::eval_batch(&arch, 1, &budget, &test_buffers)?),
        }
    }
    let mut model = wgsl_cnn::model::state::load_model(be, checkpoint, arch, capacity)?;
    eprintln!("model: {}", model.arch.name);
    wgsl_cnn::train::check_classes(&model.arch, &data)?;
    let d = pollster::block_on(evaluate_split_detailed(be, &mut model, &data.test, misclassified.is_some()));
    let acc = 100.0 * d.correct as f64 / d.n as f64;
    println!("Accuracy of the network on the {} test images: {} %", d.n, wgsl_cnn::train::python_float(acc));
    anyhow::ensure!(
        d.confusion.total() == d.n as u64 && d.confusion.correct() == d.correct as u64,
        "the confusion matrix counts {} images and {} correct, the accuracy count {} and {}",
        d.confusion.total(),
        d.confusion.correct(),
        d.n,
        d.correct
    );
    print!("{}", d.confusion.format(cli.dataset().class_names()));
    if let Some(dir) = misclassified {
        let files = write_mistakes(dir, &data.test, &d.mistakes)?;
        println!("wrote {} misclassified images and overview.png ({files} files) to {}", d.mistakes.len(), dir.display());
    }
    Ok(())
}

fn predict<B: Backend + 'static>(
    be: &mut B,
    inputs: &[PathBuf],
    checkpoint: &Path,
    arch: Option<&Arch>,
    batch_size: usize,
    json: bool,
    names: &[&str],
) -> Result<()> {
    use wgsl_cnn::predict::{collect_inputs, format_line, json_record, predict_files, Outcome};
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let files = collect_inputs(inputs);
    if files.is_empty() {
        bail!("no picture files found in {}", inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let mut model = wgsl_cnn::model::state::load_model(be, checkpoint, arch, batch_size.min(files.len()))?;
    eprintln!("model: {}", model.arch.name);
    let outcomes = pollster::block_on(predict_files(be, &mut model, &files));
    let mut failed = 0;
    for ((path, _), outcome) in files.iter().zip(&outcomes) {
        failed += matches!(outcome, Outcome::Failed(_)) as usize;
        match (json, outcome) {
            (true, _) => println!("{}", json_record(path, outcome, names)),
            (false, Outcome::Failed(_)) => eprintln!("{}", format_line(path, outcome, names)),
            (false, _) => println!("{}", format_line(path, outcome, names)),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files could not be predicted", files.len());
    }
    Ok(())
}

fn adapters(choice: &AdapterChoice) -> Result<()> {
    use wgsl_cnn::gpu::{context::describe, context::list_adapters_with_limits, kernels, smoke, GpuContext};
    for (info, limits) in list_adapters_with_limits() {
        println!("found: {}", describe(&info));
        println!("  {}", kernels::fit_report(&limits));
    }
    let ctx = GpuContext::new(choice)?;
    let a = ctx.buffer(4);
    ctx.write(&a, &[1.0f32, 2.0, 3.0, 4.0]);
    let out = ctx.buffer(4);
    smoke::scale_add_index(&ctx, &a, 2.0, &out);
    let got: Vec<f32> = ctx.read(&out);
    anyhow::ensure!(got == [2.0, 5.0, 8.0, 11.0], "the smoke kernel computed {got:?}, expected [2, 5, 8, 11]");
    println!("chosen: {} — compute shader OK", describe(&ctx.info));
    Ok(())
}

fn bench(cli: &Cli, args: &BenchArgs) -> Result<()> {
    use wgsl_cnn::bench::{table, BenchConfig, Timer};
    if !args.table.is_empty() {
        print!("{}", table::render(&table::read_runs(&args.table)?));
        return Ok(());
    }
    if cli.backend == BackendKind::Cpu {
        bail!("bench always runs the GPU and the CPU reference; leave out --backend cpu");
    }
    let cfg = BenchConfig {
        arch: model_arch(&args.model)?,
        batch: args.batch,
        quick: args.quick,
        repeats: args.repeats,
        warmup: args.warmup,
        cpu_steps: if args.no_cpu { Some(0) } else { args.cpu_steps },
        timer: match args.timer {
            TimerArg::Auto => Timer::Auto,
            TimerArg::Timestamp => Timer::Timestamp,
            TimerArg::Wall => Timer::Wall,
        },
        json: args.json.clone(),
        adapter: cli.adapter(),
    };
    wgsl_cnn::bench::run(&cfg).map(|_| ())
}

fn serve(cli: &Cli, port: u16, host: &str, web_dir: Option<PathBuf>, offline: bool) -> Result<()> {
    use wgsl_cnn::serve::{default_web_dir, Site};
    let dataset = cli.dataset();
    let data_dir = cli.data_dir();
    let data = dataset.load(&data_dir, offline)?;
    eprintln!("{}", data.report);
    let site = Site { web_dir: web_dir.unwrap_or_else(default_web_dir), data_dir, dataset };
    if !site.web_dir.join("pkg").join("wgsl_cnn_bg.wasm").is_file() {
        eprintln!("warning: {} has no pkg/wgsl_cnn_bg.wasm: build the page with scripts/web.sh first", site.web_dir.display());
    }
    wgsl_cnn::serve::serve(&site, host, port, |addr| {
        let loopback = addr.ip().is_loopback();
        println!("serving the page on http://{addr}/ (Ctrl-C to stop)");
        if !loopback {
            eprintln!("note: listening on {addr}: other machines that reach this address can load the page and the data");
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
}
