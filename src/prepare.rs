//! A user's picture made into an MNIST digit, the way MNIST's were made: grayscale, white
//! ink on black, cropped to the ink, the longer side scaled to 20 px (antialiased, aspect
//! kept, averaged by area), pasted into 28×28 with the centre of mass at the centre. A 28×28 picture is taken
//! as it is (it is already in that form, like a digit written out from the data set), only
//! inverted when its border is light.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use image::{GrayImage, ImageReader, Limits, Luma};

/// Pictures larger than this on either side are refused before decoding (decompression bombs).
pub const MAX_SIDE: u32 = 8192;
/// And the decoder may allocate at most this much.
pub const MAX_ALLOC: u64 = 256 << 20;
/// Side of the ink's box after scaling, and of the output.
const BOX: u32 = 20;
const SIDE: u32 = 28;
/// The strongest ink must stand this far above the background, or there is none.
const INK: u8 = 40;
/// After the background is taken out and the contrast stretched, pixels above this count
/// for the ink's bounding box (low, so that antialiased edges are not cropped off).
const EDGE: u8 = 8;

/// Decodes a picture file (PNG, JPEG or BMP) to 8-bit grayscale; transparency is laid over white.
pub fn decode(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_bytes(&bytes)
}

pub fn decode_bytes(bytes: &[u8]) -> Result<GrayImage> {
    ensure!(!bytes.is_empty(), "the file is empty");
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().context("cannot read the file")?;
    if reader.format().is_none() {
        bail!("not an image (not PNG, JPEG or BMP)");
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!("the image is too large to decode (at most {MAX_SIDE}×{MAX_SIDE} pixels): {e}"),
        e => anyhow::anyhow!("cannot decode the image: {e}"),
    })?;
    ensure!(img.width() > 0 && img.height() > 0, "the image has no pixels");
    let la = img.to_luma_alpha8();
    let (w, h) = la.dimensions();
    let gray = la.pixels().map(|p| {
        let (l, a) = (p.0[0] as u32, p.0[1] as u32);
        ((l * a + 255 * (255 - a) + 127) / 255) as u8
    });
    Ok(GrayImage::from_raw(w, h, gray.collect()).expect("one value per pixel"))
}

/// The 784 pixels (row-major, 0 = background) the model takes.
pub fn prepare(img: &GrayImage) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    // The background is what the border mostly is; light means dark ink: invert.
    let mut border: Vec<u8> = (0..w).flat_map(|x| [img.get_pixel(x, 0).0[0], img.get_pixel(x, h - 1).0[0]]).collect();
    border.extend((0..h).flat_map(|y| [img.get_pixel(0, y).0[0], img.get_pixel(w - 1, y).0[0]]));
    border.sort_unstable();
    let median = border[border.len() / 2];
    let invert = median > 127;
    if (w, h) == (SIDE, SIDE) {
        // Already a digit's size: as it is (only inverted if it is dark on light).
        return Ok(img.as_raw().iter().map(|&v| if invert { 255 - v } else { v }).collect());
    }
    let ink_of = |v: u8| if invert { 255 - v } else { v };
    let bg = ink_of(median);
    let top = img.pixels().map(|p| ink_of(p.0[0])).max().unwrap_or(0);
    if top <= bg.saturating_add(INK) {
        bail!("no ink found (the picture is nearly uniform)");
    }
    // Background to 0, the strongest ink to 255.
    let scale = 255.0 / (top - bg) as f32;
    let level = |v: u8| ((ink_of(v).saturating_sub(bg)) as f32 * scale).round().min(255.0) as u8;
    let mut ink = GrayImage::from_fn(w, h, |x, y| Luma([level(img.get_pixel(x, y).0[0])]));
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in ink.enumerate_pixels() {
        if p.0[0] > EDGE {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 > x1 {
        bail!("no ink found");
    }
    let crop = image::imageops::crop(&mut ink, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (cw, ch) = crop.dimensions();
    let (sw, sh) = if cw >= ch {
        (BOX, ((ch as f32 * BOX as f32 / cw as f32).round() as u32).max(1))
    } else {
        (((cw as f32 * BOX as f32 / ch as f32).round() as u32).max(1), BOX)
    };
    let small = area_resize(&crop, sw, sh);
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p.0[0] as f64;
        (mass, mx, my) = (mass + v, mx + v * (x as f64 + 0.5), my + v * (y as f64 + 0.5));
    }
    if mass == 0.0 {
        bail!("no ink left after scaling");
    }
    let half = SIDE as f64 / 2.0;
    let (dx, dy) = ((half - mx / mass).round() as i64, (half - my / mass).round() as i64);
    let mut out = vec![0u8; (SIDE * SIDE) as usize];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + dx, y as i64 + dy);
        if (0..SIDE as i64).contains(&tx) && (0..SIDE as i64).contains(&ty) {
            out[(ty * SIDE as i64 + tx) as usize] = p.0[0];
        }
    }
    Ok(out)
}

/// Resamples by area: each output pixel is the mean of the source area it covers (pixels
/// partly covered count by their share). Antialiased when shrinking, and an exact inverse
/// of an integer nearest-neighbour enlargement.
fn area_resize(src: &GrayImage, w: u32, h: u32) -> GrayImage {
    let (sw, sh) = src.dimensions();
    let (wx, wy) = (area_weights(sw, w), area_weights(sh, h));
    let mut rows = vec![0f32; (w * sh) as usize];
    for y in 0..sh as usize {
        for (ox, ws) in wx.iter().enumerate() {
            rows[y * w as usize + ox] = ws.iter().map(|&(i, f)| f * src.as_raw()[y * sw as usize + i] as f32).sum();
        }
    }
    GrayImage::from_fn(w, h, |ox, oy| {
        let v: f32 = wy[oy as usize].iter().map(|&(i, f)| f * rows[i * w as usize + ox as usize]).sum();
        Luma([v.round().clamp(0.0, 255.0) as u8])
    })
}

/// For each of `dst` output pixels, the source pixels it covers and their weights (sum 1).
fn area_weights(src: u32, dst: u32) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
            (a.floor() as usize..(b.ceil() as usize).min(src as usize))
                .filter_map(|i| {
                    let cover = b.min(i as f64 + 1.0) - a.max(i as f64);
                    (cover > 1e-9).then_some((i, (cover / scale) as f32))
                })
                .collect()
        })
        .collect()
}
