//! The command line: parse, then call the library.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use wgsl_cnn::backend::Backend;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::Arch;
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::train::TrainConfig;

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
    /// Directory holding the four MNIST IDX files (gzip'd or raw); missing ones are downloaded there.
    #[arg(long, global = true, env = "WGSL_CNN_DATA", default_value = wgsl_cnn::data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Gpu,
    Cpu,
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
        #[arg(long, value_parser = model_names())]
        model: Option<String>,
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
    },
    /// One training step from a PyTorch state_dict and batch, writing logits, loss,
    /// gradients and the state after Adam (see the README for the PyTorch side).
    Step {
        /// The model INIT holds [default: the one it records, else lenet5].
        #[arg(long, value_parser = model_names())]
        model: Option<String>,
        /// state_dict in PyTorch's names (safetensors).
        #[arg(long)]
        init: PathBuf,
        /// `x` f32 [N,1,28,28] and `y` int64 [N] (safetensors).
        #[arg(long)]
        batch: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
    },
    /// The architecture and the parameter table.
    Summary {
        #[arg(long, value_parser = model_names(), default_value = "lenet5")]
        model: String,
    },
    /// Load MNIST (downloading missing files unless --offline), verify it and print what was loaded.
    /// Mirrors: WGSL_CNN_MNIST_MIRRORS (comma-separated base URLs) or the built-in list.
    Data {
        /// Never download: fail if a file is missing.
        #[arg(long)]
        offline: bool,
    },
    /// List the GPU adapters wgpu can see and run a tiny compute shader on the chosen one.
    Adapters,
    /// Time every kernel of the training step at the seed's shapes (GPU timestamps where the
    /// adapter has them), the step end to end, eval, and the CPU reference's step.
    /// Uses synthetic data (no download); always the GPU, plus the CPU reference.
    Bench(BenchArgs),
}

/// `--model`'s choices.
fn model_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(wgsl_cnn::model::zoo::NAMES)
}

fn arch(name: Option<&str>) -> Result<Option<Arch>> {
    name.map(wgsl_cnn::model::zoo::arch).transpose()
}

#[derive(Parser, Clone)]
struct BenchArgs {
    /// The model whose training step is timed.
    #[arg(long, value_parser = model_names(), default_value = "lenet5")]
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TimerArg {
    Auto,
    Timestamp,
    Wall,
}

#[derive(Parser, Clone)]
struct TrainArgs {
    /// The network [default: lenet5, or with --resume the checkpoint's].
    #[arg(long, value_parser = model_names())]
    model: Option<String>,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Seeds the initialisation and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Checkpoint written after each epoch (Adam's state goes next to it, *.optim.safetensors).
    #[arg(long, default_value = "model.safetensors")]
    save: PathBuf,
    /// Continue from a checkpoint saved by `train` (up to --epochs in total).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Exit with an error if the last epoch's test accuracy (%) is below this.
    #[arg(long)]
    min_accuracy: Option<f64>,
    /// Print the loss line every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: usize,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
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
                let $be = &mut Gpu::new(&AdapterChoice { name: $cli.adapter.clone() })?;
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
    let command = cli.command.take().unwrap_or_else(|| Command::Train(TrainArgs::default()));
    match command {
        Command::Train(args) => with_backend!(cli, be => train(be, &cli.data_dir, &args)),
        Command::Eval { checkpoint, model, batch_size } => {
            let arch = arch(model.as_deref())?;
            with_backend!(cli, be => eval(be, &cli.data_dir, &checkpoint, arch.as_ref(), batch_size))
        }
        Command::Step { model, init, batch, out, lr } => {
            let arch = arch(model.as_deref())?;
            with_backend!(cli, be => wgsl_cnn::step::run(be, arch.as_ref(), &init, &batch, &out, lr))
        }
        Command::Summary { model } => {
            print!("{}", wgsl_cnn::model::summary::summary(&wgsl_cnn::model::zoo::arch(&model)?));
            Ok(())
        }
        Command::Data { offline } => wgsl_cnn::data::data_command(&cli.data_dir, offline),
        Command::Adapters => adapters(&AdapterChoice { name: cli.adapter.clone() }),
        Command::Bench(args) => bench(&cli, &args),
    }
}

fn load_data(dir: &Path) -> Result<wgsl_cnn::data::Mnist> {
    wgsl_cnn::data::ensure(dir, &wgsl_cnn::data::mirrors_from_env())
}

fn train<B: Backend + 'static>(be: &mut B, data_dir: &Path, args: &TrainArgs) -> Result<()> {
    let data = load_data(data_dir)?;
    let cfg = TrainConfig {
        model: arch(args.model.as_deref())?,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        limit_train: args.limit_train,
        save: Some(args.save.clone()),
        resume: args.resume.clone(),
        log_every: args.log_every.max(1),
        progress: !args.no_progress,
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

fn eval<B: Backend + 'static>(be: &mut B, data_dir: &Path, checkpoint: &Path, arch: Option<&Arch>, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let data = load_data(data_dir)?;
    let mut model = wgsl_cnn::model::state::load_model(be, checkpoint, arch, batch_size)?;
    eprintln!("model: {}", model.arch.name);
    let (correct, n) = wgsl_cnn::train::evaluate_split(be, &mut model, &data.test);
    let acc = 100.0 * correct as f64 / n as f64;
    println!("Accuracy of the network on the {n} test images: {} %", wgsl_cnn::train::python_float(acc));
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
    use wgsl_cnn::bench::{BenchConfig, Timer};
    if cli.backend == BackendKind::Cpu {
        bail!("bench always runs the GPU and the CPU reference; leave out --backend cpu");
    }
    let cfg = BenchConfig {
        arch: wgsl_cnn::model::zoo::arch(&args.model)?,
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
        adapter: AdapterChoice { name: cli.adapter.clone() },
    };
    wgsl_cnn::bench::run(&cfg).map(|_| ())
}
