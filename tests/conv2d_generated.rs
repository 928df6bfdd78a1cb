//! Generator and expect test for the unrolled kernels of shaders/conv2d.wgsl.
//!
//! `conv_forward_rows{4,8,12}` and `conv_grad_input_scatter{4,8,12}` are written out fully
//! unrolled on purpose (on lavapipe, accumulators in arrays indexed by unrolled loop counters
//! ran 25% to 3.5× slower; see the comments in the shader). The functions below produce their
//! exact text for np = 1, 2, 3 (4·np outputs per invocation). In the shader each family sits
//! between a two-line `// BEGIN GENERATED <name> …` comment and `// END GENERATED <name>`.
//!
//! `cargo test --release --test conv2d_generated` fails when a region differs from the
//! generator's output and prints the first differing line. To change the kernels, edit the
//! generator and run it with `WGSL_CNN_BLESS=1`: it rewrites the regions in place (and passes).

use std::fmt::Write;
use std::path::PathBuf;

/// Largest kernel size the row / scatter kernels handle: kernel columns kw = 0..K_MAX are
/// unrolled, each behind `if (p.k > kw)` except kw = 0.
const K_MAX: usize = 5;
const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// Float `e` of the consecutive vec4 loads `{v}0, {v}1, …`: ("v", 5) → "v1.y".
fn lane(v: &str, e: usize) -> String {
    format!("{v}{}.{}", e / 4, LANES[e % 4])
}

/// "a0, a1, …, a{n-1}".
fn acc_list(n: usize) -> String {
    (0..n).map(|i| format!("a{i}")).collect::<Vec<_>>().join(", ")
}

/// Entry point header; the continuation line is aligned to the np = 1 name for all three.
fn header(s: &mut String, name: &str, np: usize) {
    let indent = " ".repeat(format!("fn {name}4(").len());
    let n = 4 * np;
    s.push_str("@compute @workgroup_size(64)\n");
    writeln!(s, "fn {name}{n}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,").unwrap();
    writeln!(s, "{indent}@builtin(local_invocation_index) li: u32) {{").unwrap();
}

/// The kernel-column taps of the inner (channel, kernel row) loop body. Tap kw loads the
/// weight vec4 `w{kw}` (4 channels) from `in2v[w_index(kw)]`, then for e = 0..n emits
/// `a{acc} += w{kw} * {v}{lane}` with (acc, lane) = fma(e, kw): lane indexes the floats of
/// the loaded vectors `{v}0, {v}1, …` (see `lane`).
fn taps(s: &mut String, n: usize, v: &str, w_index: impl Fn(usize) -> String, fma: impl Fn(usize, usize) -> (usize, usize)) {
    for kw in 0..K_MAX {
        // kw = 0 always exists; the other taps are guarded by the runtime kernel size.
        let ind = if kw == 0 { " ".repeat(12) } else { " ".repeat(16) };
        if kw > 0 {
            writeln!(s, "            if (p.k > {kw}u) {{").unwrap();
        }
        writeln!(s, "{ind}let w{kw} = in2v[{}];", w_index(kw)).unwrap();
        for e in 0..n {
            let (acc, src) = fma(e, kw);
            writeln!(s, "{ind}a{acc} += w{kw} * {};", lane(v, src)).unwrap();
        }
        if kw > 0 {
            s.push_str("            }\n");
        }
    }
}

/// `conv_forward_rows{4·np}`: one invocation computes the 4·np outputs ow0 + i of output row
/// (img, oh) for 4 output channels (block cb); accumulator a{i} holds y[ow0 + i, 4 channels].
/// Per (ci, kh) it loads the np + 1 vec4 v0..v{np} = x[.., ow0 .. ow0 + 4·np + 4) and tap kw
/// adds wt[(ci·k + kh)·k + kw, 4 channels] · x[ow0 + i + kw] to a{i}.
fn forward_rows(np: usize) -> String {
    let n = 4 * np;
    let mut s = String::new();
    header(&mut s, "conv_forward_rows", np);
    // Invocation → (channel block cb, output row = img·h_out + oh, first column ow0).
    write!(
        s,
        "    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let blocks = p.w_out / {n}u;
    let rest = g / cq;
    let ow0 = (rest % blocks) * {n}u;
    let row = rest / blocks;
    if (row >= p.n * p.h_out) {{
        return;
    }}
    let img = row / p.h_out;
    let oh = row % p.h_out;
    // kernel rows kh with 0 ≤ oh + kh − pad < h
    let kh_lo = u32(max(i32(p.pad) - i32(oh), 0));
    let kh_hi = min(p.k, p.h + p.pad - oh);
    let rowq = p.x_row / 4u;
    let last = arrayLength(&in1v) - 1u;
"
    )
    .unwrap();
    for i in 0..n {
        writeln!(s, "    var a{i} = vec4<f32>(); // output ow0 + {i}, 4 channels").unwrap();
    }
    s.push_str(
        "    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let xb = ((img * p.c_in + ci) * p.h + oh + kh - p.pad) * rowq + ow0 / 4u;
",
    );
    // np + 1 aligned loads cover inputs ow0 .. ow0 + 4·np + 4, enough for every tap (k ≤ 5);
    // the clamp keeps the extra load at the end of the last row inside the buffer.
    for j in 0..=np {
        writeln!(s, "            let v{j} = in1v[min(xb + {j}u, last)];").unwrap();
    }
    s.push_str("            let wr = (ci * p.k + kh) * p.k * cq + cb;\n");
    // Tap kw: weight row (ci·k + kh)·k + kw; output i reads input ow0 + i + kw.
    taps(&mut s, n, "v", |kw| format!("wr + {kw}u * cq"), |i, kw| (i, i + kw));
    // Store: y[img, co, oh, ow0 + i] = a{i}[j] + bias[co] for the 4 channels co = 4·cb + j.
    write!(
        s,
        "        }}
    }}
    let acc = array<vec4<f32>, {n}>({acc});
    let plane = p.h_out * p.w_out;
    let ybase = img * p.c_out * plane + oh * p.w_out + ow0;
    for (var j = 0u; j < 4u; j++) {{
        let co = cb * 4u + j;
        if (co < p.c_out) {{
            var add = 0.0;
            if (p.has_bias != 0u) {{
                add = in3[co];
            }}
            let o = ybase + co * plane;
            for (var i = 0u; i < {n}u; i++) {{
                out4[o + i] = acc[i][j] + add;
            }}
        }}
    }}
}}
",
        acc = acc_list(n)
    )
    .unwrap();
    s
}

/// `conv_grad_input_scatter{4·np}`: one invocation computes the whole dx row (img, ih) for 4
/// input channels (block cb), with w_out = 4·np. Accumulator a{c} (c = 0 .. 4·np + K_MAX − 1)
/// holds dx column c − pad. Per (co, kh) it loads the dy row oh = ih + pad − kh as the np
/// vec4 d0..d{np-1}, and tap kw adds w[co, 4 channels, kh, kw] · dy[oh, ow] to a{ow + kw}.
/// The weights are the flipped copy (conv_weight_kc, flip = 1), so w[co, ·, kh, kw] sits in
/// row (co·k + k−1−kh)·k + k−1−kw.
fn grad_input_scatter(np: usize) -> String {
    let n = 4 * np;
    let n_acc = n + K_MAX - 1;
    let mut s = String::new();
    header(&mut s, "conv_grad_input_scatter", np);
    // Invocation → (channel block cb, dx row = img·h + ih); kernel rows kh with
    // 0 ≤ ih + pad − kh < h_out.
    s.push_str(
        "    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let row = g / cq;
    if (row >= p.n * p.h) {
        return;
    }
    let img = row / p.h;
    let ih = row % p.h;
    let kh_lo = u32(max(i32(ih + p.pad + 1u) - i32(p.h_out), 0));
    let kh_hi = min(p.k, ih + p.pad + 1u);
    let dyq = p.w_out / 4u;
",
    );
    for c in 0..n_acc {
        writeln!(s, "    var a{c} = vec4<f32>();").unwrap();
    }
    s.push_str(
        "    for (var co = 0u; co < p.c_out; co++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let db = ((img * p.c_out + co) * p.h_out + ih + p.pad - kh) * dyq;
",
    );
    for j in 0..np {
        writeln!(s, "            let d{j} = in1v[db + {j}u];").unwrap();
    }
    s.push_str("            let wr = (co * p.k + p.k - 1u - kh) * p.k * cq + cb;\n");
    // Tap kw: flipped column k−1−kw of the flipped row; dy column ow feeds dx column ow + kw − pad.
    taps(&mut s, n, "d", |kw| format!("wr + (p.k - {}u) * cq", kw + 1), |ow, kw| (ow + kw, ow));
    // Store: dx[img, ci, ih, c − pad] = a{c}[j] for the columns inside dx, ci = 4·cb + j.
    write!(
        s,
        "        }}
    }}
    let acc = array<vec4<f32>, {n_acc}>({acc});
    for (var j = 0u; j < 4u; j++) {{
        let ci = cb * 4u + j;
        if (ci < p.c_in) {{
            let o = ((img * p.c_in + ci) * p.h + ih) * p.w;
            for (var a = 0u; a < {n_acc}u; a++) {{
                let iw = i32(a) - i32(p.pad);
                if (iw >= 0 && iw < i32(p.w)) {{
                    out3[o + u32(iw)] = acc[a][j];
                }}
            }}
        }}
    }}
}}
",
        acc = acc_list(n_acc)
    )
    .unwrap();
    s
}

/// The three variants np = 1, 2, 3 of one family, separated by a blank line.
fn family(gen: fn(usize) -> String) -> String {
    (1..=3).map(gen).collect::<Vec<_>>().join("\n")
}

/// The generated regions of shaders/conv2d.wgsl: (marker name, expected text).
fn regions() -> Vec<(&'static str, String)> {
    vec![("forward_rows", family(forward_rows)), ("grad_input_scatter", family(grad_input_scatter))]
}

fn begin_marker(name: &str) -> String {
    format!(
        "// BEGIN GENERATED {name} by tests/conv2d_generated.rs: edit the generator, then run\n\
         // WGSL_CNN_BLESS=1 cargo test --release --test conv2d_generated (rewrites up to END).\n"
    )
}

fn end_marker(name: &str) -> String {
    format!("// END GENERATED {name}\n")
}

/// Byte range of the body between the markers of region `name` (each marker exactly once,
/// BEGIN before END, each at the start of a line).
fn find_region(text: &str, name: &str) -> Result<std::ops::Range<usize>, String> {
    let find_once = |marker: &str| -> Result<usize, String> {
        let hits: Vec<usize> =
            text.match_indices(marker).map(|(i, _)| i).filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n').collect();
        match hits[..] {
            [i] => Ok(i),
            _ => Err(format!("marker {:?} found {} times at line starts, want once", marker.lines().next().unwrap(), hits.len())),
        }
    };
    let (begin, end) = (begin_marker(name), end_marker(name));
    let start = find_once(&begin)? + begin.len();
    let stop = find_once(&end)?;
    if stop < start {
        return Err(format!("END GENERATED {name} comes before its BEGIN"));
    }
    Ok(start..stop)
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// None when equal, else a message naming the first differing line (file and generator numbering).
fn first_difference(got: &str, want: &str, first_line: usize) -> Option<String> {
    if got == want {
        return None;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.split('\n').collect(), want.split('\n').collect());
    let i = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)).unwrap();
    Some(format!(
        "first difference at shaders/conv2d.wgsl line {} (generator line {}):\n  file:      {:?}\n  generator: {:?}\n\
         (region: {} lines in the file, {} from the generator)",
        first_line + i,
        i + 1,
        g.get(i).copied().unwrap_or("<end of region>"),
        w.get(i).copied().unwrap_or("<end of region>"),
        g.len() - 1,
        w.len() - 1,
    ))
}

/// Replaces the body of every region by the generator's text; returns the new file text.
fn bless(mut text: String) -> Result<String, String> {
    for (name, want) in regions() {
        let r = find_region(&text, name)?;
        text.replace_range(r, &want);
    }
    Ok(text)
}

fn shader_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders/conv2d.wgsl")
}

#[test]
fn generated_kernels_match_shader() {
    let path = shader_path();
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if std::env::var("WGSL_CNN_BLESS").is_ok_and(|v| v == "1") {
        let blessed = bless(text.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if blessed != text {
            std::fs::write(&path, &blessed).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            eprintln!("WGSL_CNN_BLESS=1: rewrote the generated regions of {}", path.display());
        } else {
            eprintln!("WGSL_CNN_BLESS=1: {} already up to date", path.display());
        }
        text = blessed;
    }
    let mut failures = Vec::new();
    for (name, want) in regions() {
        let r = find_region(&text, name).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(diff) = first_difference(&text[r.clone()], &want, line_of(&text, r.start)) {
            failures.push(format!("region {name}: {diff}"));
        }
    }
    assert!(
        failures.is_empty(),
        "generated kernels out of sync with tests/conv2d_generated.rs (edit the generator, then run \
         WGSL_CNN_BLESS=1 cargo test --release --test conv2d_generated):\n{}",
        failures.join("\n")
    );
}

/// The generator emits the six entry points the wrapper (src/gpu/conv2d.rs) dispatches, and
/// the accumulator counts the shader comments promise (4·np, and 4·np + 4 ≤ 16 for scatter).
#[test]
fn generator_emits_expected_entry_points() {
    for np in 1..=3 {
        let (f, s) = (forward_rows(np), grad_input_scatter(np));
        assert!(f.contains(&format!("fn conv_forward_rows{}(", 4 * np)), "np {np}:\n{f}");
        assert!(s.contains(&format!("fn conv_grad_input_scatter{}(", 4 * np)), "np {np}:\n{s}");
        assert_eq!(f.matches(" = vec4<f32>();").count(), 4 * np, "forward accumulators, np {np}");
        assert_eq!(s.matches(" = vec4<f32>();").count(), 4 * np + 4, "scatter accumulators, np {np}");
        // One FMA per (tap, output): 5 taps × 4·np outputs.
        assert_eq!(f.matches(" += w").count(), K_MAX * 4 * np, "forward FMAs, np {np}");
        assert_eq!(s.matches(" += w").count(), K_MAX * 4 * np, "scatter FMAs, np {np}");
    }
}

/// Blessing replaces only what lies between the markers and is reported as a difference first.
#[test]
fn bless_rewrites_only_the_regions() {
    let mut text = String::from("before\n");
    for (name, _) in regions() {
        text += &begin_marker(name);
        text += "stale\n";
        text += &end_marker(name);
        text += "between\n";
    }
    let r = find_region(&text, "forward_rows").unwrap();
    let diff = first_difference(&text[r.clone()], &forward_rows(1), line_of(&text, r.start)).expect("stale region must differ");
    assert!(diff.contains("line 4 (generator line 1)"), "{diff}");
    let blessed = bless(text).unwrap();
    let want = format!(
        "before\n{}{}{}between\n{}{}{}between\n",
        begin_marker("forward_rows"),
        family(forward_rows),
        end_marker("forward_rows"),
        begin_marker("grad_input_scatter"),
        family(grad_input_scatter),
        end_marker("grad_input_scatter"),
    );
    assert_eq!(blessed, want);
    // A missing or doubled marker is an error, not a silent pass.
    assert!(find_region("nothing here\n", "forward_rows").is_err());
    let doubled = format!("{0}x\n{1}{0}y\n{1}", begin_marker("forward_rows"), end_marker("forward_rows"));
    assert!(find_region(&doubled, "forward_rows").is_err());
}
