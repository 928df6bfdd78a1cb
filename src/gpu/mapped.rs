//! Waiting for the device without blocking: the state of one `map_async` (or
//! `on_submitted_work_done`) as a future. Natively the waiter polls the device until the
//! callback has run (`Device::poll` blocks); on the web the browser runs the callback from its
//! event loop and wakes the awaiting task, so nothing ever blocks the page.

use std::sync::{Arc, Mutex};
use std::task::Waker;
#[cfg(target_arch = "wasm32")]
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// Where a buffer mapping (or a wait for submitted work) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Done,
    /// The mapping failed (the device was lost).
    Failed,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    waker: Option<Waker>,
}

/// Shared between the callback wgpu calls and whoever waits for it.
#[derive(Clone, Debug)]
pub struct Signal(Arc<Mutex<Inner>>);

impl Default for Signal {
    fn default() -> Self {
        Signal(Arc::new(Mutex::new(Inner { status: Status::Waiting, waker: None })))
    }
}

impl Signal {
    pub fn status(&self) -> Status {
        self.0.lock().expect("signal lock").status
    }

    /// Back to `Waiting` for the next use of the same buffer.
    pub fn reset(&self) {
        self.set(Status::Waiting);
    }

    fn set(&self, status: Status) {
        let waker = {
            let mut inner = self.0.lock().expect("signal lock");
            inner.status = status;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The callback for `BufferSlice::map_async`.
    pub fn on_mapped(&self) -> impl FnOnce(Result<(), wgpu::BufferAsyncError>) + Send + 'static {
        let s = self.clone();
        move |r| s.set(if r.is_ok() { Status::Done } else { Status::Failed })
    }

    /// The callback for `Queue::on_submitted_work_done`.
    pub fn on_done(&self) -> impl FnOnce() + Send + 'static {
        let s = self.clone();
        move || s.set(Status::Done)
    }

    /// Resolves once the callback has run: natively after polling `device` until the submitted
    /// work is done (a blocking wait; a callback that still has not run then, as after a lost
    /// device, is `Failed`), on the web when the browser runs it.
    pub async fn wait(&self, device: &wgpu::Device) -> Status {
        #[cfg(not(target_arch = "wasm32"))]
        {
            if self.status() == Status::Waiting {
                let _ = device.poll(wgpu::PollType::wait_indefinitely());
            }
            match self.status() {
                Status::Waiting => Status::Failed,
                s => s,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = device;
            Wait(self).await
        }
    }

    /// Polls the device once without blocking (natively; the web needs no poll) and says
    /// where the callback stands.
    pub fn poll(&self, device: &wgpu::Device) -> Status {
        if self.status() == Status::Waiting {
            let _ = device.poll(wgpu::PollType::Poll);
        }
        self.status()
    }
}

#[cfg(target_arch = "wasm32")]
struct Wait<'a>(&'a Signal);

#[cfg(target_arch = "wasm32")]
impl Future for Wait<'_> {
    type Output = Status;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Status> {
        let mut inner = self.0 .0.lock().expect("signal lock");
        match inner.status {
            Status::Waiting => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            s => Poll::Ready(s),
        }
    }
}
