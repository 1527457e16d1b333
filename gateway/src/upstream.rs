//! gRPC calls to the services with messages known only at run time: a codec for
//! `DynamicMessage` and one lazily connected channel per service.

use std::collections::HashMap;
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// Encodes any `DynamicMessage`; decodes into the given output type.
#[derive(Clone)]
pub struct DynamicCodec {
    output: MessageDescriptor,
}

impl DynamicCodec {
    pub fn new(output: MessageDescriptor) -> Self {
        Self { output }
    }
}

pub struct DynamicEncoder;
pub struct DynamicDecoder(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.output.clone())
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;
    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode request: {e}")))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode response: {e}")))
    }
}

/// One channel per service, keyed by its short name (`product`).
#[derive(Clone, Debug)]
pub struct Upstreams {
    channels: HashMap<String, Channel>,
}

impl Upstreams {
    /// Channels connect on first use and reconnect on their own, so the gateway
    /// starts (and answers 503) while a service is still down.
    pub fn new(urls: &HashMap<String, String>, connect_timeout: Duration) -> anyhow::Result<Self> {
        let mut channels = HashMap::new();
        for (name, url) in urls {
            let endpoint = Endpoint::from_shared(url.clone())?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true);
            channels.insert(name.clone(), endpoint.connect_lazy());
        }
        Ok(Self { channels })
    }

    pub fn channel(&self, name: &str) -> Option<Channel> {
        self.channels.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    pub async fn unary(
        &self,
        upstream: &str,
        path: &str,
        request: tonic::Request<DynamicMessage>,
        output: MessageDescriptor,
    ) -> Result<tonic::Response<DynamicMessage>, Status> {
        let mut grpc = self.client(upstream)?;
        grpc.ready().await.map_err(unavailable)?;
        grpc.unary(request, grpc_path(path)?, DynamicCodec::new(output))
            .await
    }

    pub async fn server_streaming(
        &self,
        upstream: &str,
        path: &str,
        request: tonic::Request<DynamicMessage>,
        output: MessageDescriptor,
    ) -> Result<tonic::Response<Streaming<DynamicMessage>>, Status> {
        let mut grpc = self.client(upstream)?;
        grpc.ready().await.map_err(unavailable)?;
        grpc.server_streaming(request, grpc_path(path)?, DynamicCodec::new(output))
            .await
    }

    fn client(&self, upstream: &str) -> Result<tonic::client::Grpc<Channel>, Status> {
        self.channel(upstream)
            .map(tonic::client::Grpc::new)
            .ok_or_else(|| Status::unavailable(format!("no upstream configured for {upstream}")))
    }
}

fn grpc_path(path: &str) -> Result<PathAndQuery, Status> {
    PathAndQuery::try_from(path).map_err(|e| Status::internal(format!("bad gRPC path {path}: {e}")))
}

fn unavailable(err: tonic::transport::Error) -> Status {
    Status::unavailable(format!("upstream unavailable: {err}"))
}
