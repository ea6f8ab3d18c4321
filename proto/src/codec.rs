//! The codec every generated client and server uses: prost encoding (as `tonic_prost`), with
//! small per-RPC buffers.
//!
//! tonic allocates a fresh encode and decode buffer for every RPC, 8 KiB each by default. A broker
//! holds one ingest stream per agent (10,000 agents: 160 MiB in buffers alone), while an agent's
//! batch is a few KiB and an ack a few bytes. Buffers here start at 512 bytes; a larger message
//! reserves what it needs at once (decoding) or grows by doubling (encoding), so big range
//! responses cost nothing more.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The initial size of each RPC's encode and decode buffer.
pub const BUFFER_BYTES: usize = 512;
/// How much a streaming response gathers before it yields to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// prost encoding with small buffers; see the module documentation.
#[derive(Debug, Clone)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
