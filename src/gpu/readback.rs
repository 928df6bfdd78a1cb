//! Reads that do not wait: the training loop's loss and non-finite flag are copied into one of
//! a few staging buffers after the work recorded so far, and mapped when the device gets
//! there, while later steps keep the queue full (`Backend::read_soon` / `finish_read`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::context::{GpuContext, RawBuffer};

// A slot's state (the map callback sets it, and must be Send).
const FREE: u8 = 0;
/// Copy submitted, mapping requested.
const WAITING: u8 = 1;
const MAPPED: u8 = 2;
/// The mapping failed (device lost).
const FAILED: u8 = 3;

struct Slot {
    buffer: wgpu::Buffer,
    bytes: u64,
    /// f32 and u32 elements at the start of the buffer, the u32 ones from `u_offset`.
    f_len: usize,
    u_len: usize,
    u_offset: u64,
    state: Arc<AtomicU8>,
}

/// Staging buffers for reads in flight, reused once read.
#[derive(Default)]
pub struct ReadRing {
    slots: Vec<Slot>,
}

impl ReadRing {
    /// Copies `f` and `u` after the work recorded so far, submits, and asks for the copy to
    /// be mapped; returns the slot to pass to `finish`.
    pub fn start(&mut self, ctx: &GpuContext, f: &RawBuffer, u: &RawBuffer) -> usize {
        let u_offset = (f.len as u64 * 4).next_multiple_of(8);
        let bytes = (u_offset + u.len as u64 * 4).max(8);
        let i = match self.slots.iter().position(|s| s.state.load(Ordering::Acquire) == FREE && s.bytes >= bytes) {
            Some(i) => i,
            None => {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read soon"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let state = Arc::new(AtomicU8::new(FREE));
                self.slots.push(Slot { buffer, bytes, f_len: 0, u_len: 0, u_offset: 0, state });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        (slot.f_len, slot.u_len, slot.u_offset) = (f.len, u.len, u_offset);
        ctx.with_encoder(|enc| {
            if f.len > 0 {
                enc.copy_buffer_to_buffer(&f.buffer, f.offset, &slot.buffer, 0, f.len as u64 * 4);
            }
            if u.len > 0 {
                enc.copy_buffer_to_buffer(&u.buffer, u.offset, &slot.buffer, u_offset, u.len as u64 * 4);
            }
        });
        // A buffer may be mapped only after the submission that writes it.
        ctx.submit();
        slot.state.store(WAITING, Ordering::Release);
        let state = slot.state.clone();
        slot.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release));
        i
    }

    /// The values of read `i` once the device has done the copy: None while it has not
    /// (`wait`: blocks until it has). Each read is returned once; its slot is reused after.
    pub fn finish(&mut self, ctx: &GpuContext, i: usize, wait: bool) -> Option<(Vec<f32>, Vec<u32>)> {
        let slot = &self.slots[i];
        assert!(slot.state.load(Ordering::Acquire) != FREE, "read {i} was already taken");
        if slot.state.load(Ordering::Acquire) == WAITING {
            let how = if wait { wgpu::PollType::wait_indefinitely() } else { wgpu::PollType::Poll };
            ctx.device.poll(how).expect("device lost while reading back");
        }
        match slot.state.load(Ordering::Acquire) {
            WAITING => None,
            FAILED => panic!("mapping a readback buffer failed (device lost?)"),
            _ => {
                let view = slot.buffer.slice(..).get_mapped_range().expect("the readback buffer is mapped");
                let f = bytemuck::cast_slice::<u8, f32>(&view[..slot.f_len * 4]).to_vec();
                let u0 = slot.u_offset as usize;
                let u = bytemuck::cast_slice::<u8, u32>(&view[u0..u0 + slot.u_len * 4]).to_vec();
                drop(view);
                slot.buffer.unmap();
                slot.state.store(FREE, Ordering::Release);
                Some((f, u))
            }
        }
    }
}
