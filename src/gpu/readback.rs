//! Reads that do not wait: the training loop's loss and non-finite flag are copied into one of
//! a few staging buffers after the work recorded so far, and mapped when the device gets
//! there, while later steps keep the queue full (`Backend::read_soon` / `finish_read`).

use super::context::{GpuContext, RawBuffer};
use super::mapped::{Signal, Status};

struct Slot {
    buffer: wgpu::Buffer,
    bytes: u64,
    /// f32 and u32 elements at the start of the buffer, the u32 ones from `u_offset`.
    f_len: usize,
    u_len: usize,
    u_offset: u64,
    /// The mapping's state while the slot is in use; None while it is free.
    mapping: Option<Signal>,
}

/// Staging buffers for reads in flight, reused once read.
#[derive(Default)]
pub struct ReadRing {
    slots: Vec<Slot>,
}

impl ReadRing {
    /// Copies `f` and `u` after the work recorded so far, submits, and asks for the copy to
    /// be mapped; returns the slot to pass to `try_finish` or `finish`.
    pub fn start(&mut self, ctx: &GpuContext, f: &RawBuffer, u: &RawBuffer) -> usize {
        let u_offset = (f.len as u64 * 4).next_multiple_of(8);
        let bytes = (u_offset + u.len as u64 * 4).max(8);
        let i = match self.slots.iter().position(|s| s.mapping.is_none() && s.bytes >= bytes) {
            Some(i) => i,
            None => {
                let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read soon"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.slots.push(Slot { buffer, bytes, f_len: 0, u_len: 0, u_offset: 0, mapping: None });
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
        let mapping = Signal::default();
        slot.buffer.slice(..).map_async(wgpu::MapMode::Read, mapping.on_mapped());
        slot.mapping = Some(mapping);
        i
    }

    /// The values of read `i` if the device has done the copy, else None (it never blocks).
    /// Each read is returned once; its slot is reused after.
    pub fn try_finish(&mut self, ctx: &GpuContext, i: usize) -> Option<(Vec<f32>, Vec<u32>)> {
        match self.mapping(i).poll(&ctx.device) {
            Status::Waiting => None,
            status => Some(self.take(i, status)),
        }
    }

    /// The values of read `i`, once the device has done the copy (awaited).
    pub async fn finish(&mut self, ctx: &GpuContext, i: usize) -> (Vec<f32>, Vec<u32>) {
        let status = self.mapping(i).wait(&ctx.device).await;
        self.take(i, status)
    }

    fn mapping(&self, i: usize) -> Signal {
        self.slots[i].mapping.clone().unwrap_or_else(|| panic!("read {i} was already taken"))
    }

    fn take(&mut self, i: usize, status: Status) -> (Vec<f32>, Vec<u32>) {
        assert_eq!(status, Status::Done, "mapping a readback buffer failed (device lost?)");
        let slot = &mut self.slots[i];
        let view = slot.buffer.slice(..).get_mapped_range().expect("the readback buffer is mapped");
        let f = bytemuck::cast_slice::<u8, f32>(&view[..slot.f_len * 4]).to_vec();
        let u0 = slot.u_offset as usize;
        let u = bytemuck::cast_slice::<u8, u32>(&view[u0..u0 + slot.u_len * 4]).to_vec();
        drop(view);
        slot.buffer.unmap();
        slot.mapping = None;
        (f, u)
    }
}
