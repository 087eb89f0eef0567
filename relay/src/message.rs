//! Reading one Convert message from a stream, and not a byte more.
//!
//! The sans-IO machines of `mpbond_protocol::handshake` say how many bytes they still
//! need; [`read_steps`] reads exactly that many at a time and feeds them back, so the
//! bytes after the message (the relayed stream) stay in the socket. [`read_message`]
//! is the plain case: one message, decoded. The concentrator drives its
//! `ServerHandshake` and the agent its `ClientHandshake` the same way.
//!
//! ```no_run
//! # async fn example(mut stream: tokio::net::TcpStream) -> Result<(), mpbond_relay::message::ReadMessageError> {
//! let read = mpbond_relay::message::read_message(&mut stream).await?;
//! println!("{:?} in {} bytes", read.message, read.wire.len());
//! # Ok(())
//! # }
//! ```

use std::io;

use mpbond_protocol::{DecodeError, Message, MessageReader, Step};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One Convert message as read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    /// Its exact bytes (what a cookie's tag covers).
    pub wire: Vec<u8>,
    /// The decoded message.
    pub message: Message,
}

/// Why no message was read.
#[derive(Debug, Error)]
pub enum ReadMessageError {
    /// The stream ended or failed before the message was whole. End of stream is
    /// `io::ErrorKind::UnexpectedEof`.
    #[error("reading a Convert message: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a Convert message.
    #[error("malformed Convert message: {0}")]
    Decode(#[from] DecodeError),
}

impl ReadMessageError {
    /// Whether the peer closed before the message was whole.
    pub fn is_eof(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
    }
}

/// Feed `feed` the bytes it asks for, read exactly, until it is done.
///
/// `feed` is called first with no bytes (so it can ask for the fixed header), then
/// with each piece it asked for. It must answer [`Step::NeedMore`] with the exact
/// count it takes next, as the handshake machines do; the stream is then never read
/// past the message. End of stream before it is done is `UnexpectedEof`.
pub async fn read_steps<R, T>(
    reader: &mut R,
    mut feed: impl FnMut(&[u8]) -> Step<T>,
) -> io::Result<T>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut piece = Vec::new();
    loop {
        match feed(&piece) {
            Step::Done(done) => return Ok(done),
            Step::NeedMore { needed } => {
                piece.resize(needed, 0);
                reader.read_exact(&mut piece).await?;
            }
        }
    }
}

/// Read exactly one Convert message: the fixed header, then the rest that it
/// announces. Bytes after the message are left in `reader`.
pub async fn read_message<R>(reader: &mut R) -> Result<ReadMessage, ReadMessageError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut message = MessageReader::new();
    let decoded = read_steps(reader, |bytes| message.receive(bytes).step).await?;
    Ok(ReadMessage {
        message: decoded?,
        wire: message.wire().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_one_message_and_leaves_the_rest() {
        let mut wire = Message::info().encode().unwrap();
        let len = wire.len();
        wire.extend_from_slice(b"after");
        let mut stream = &wire[..];
        let read = read_message(&mut stream).await.unwrap();
        assert_eq!(read.message, Message::info());
        assert_eq!(read.wire, wire[..len]);
        assert_eq!(stream, b"after");
    }

    #[tokio::test]
    async fn eof_and_garbage_are_told_apart() {
        let mut short = &[1u8, 2, 0x22][..];
        assert!(read_message(&mut short).await.unwrap_err().is_eof());
        let mut garbage = &b"GET / HTTP/1.1\r\n"[..];
        let error = read_message(&mut garbage).await.unwrap_err();
        assert!(matches!(error, ReadMessageError::Decode(_)), "{error:?}");
        // Refused at the fixed header: nothing after it was read.
        assert_eq!(garbage, b"/ HTTP/1.1\r\n");
    }
}
