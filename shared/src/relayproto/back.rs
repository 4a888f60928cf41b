//! The back-connection hello and its answer (`docs/relay-protocol.md`, "The back-connection").

use super::{
    BACK_MAGIC, Error, HELLO_ANSWER_LEN, HELLO_LEN, HmacSha256, MAC_LEN, NONCE_LEN, Secret, VERSION,
};
use hmac::Mac;

/// The hello a device sends first on its TLS back-connection:
/// magic "HNRB", version, type 1, two zero bytes, device id, session id, then
/// HMAC-SHA256(secret, "HNRB hello" || device id || session id || nonce) (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The device.
    pub device_id: u64,
    /// The session of the connection request being answered.
    pub session: u64,
    /// The proof of the nonce.
    pub mac: [u8; MAC_LEN],
}

/// The label the hello MAC starts with (domain separation from the UDP MACs).
const HELLO_LABEL: &[u8] = b"HNRB hello";

impl Hello {
    /// The hello for a connection request, proving its nonce.
    pub fn new(device_id: u64, session: u64, nonce: &[u8; NONCE_LEN], secret: &Secret) -> Hello {
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(
            &Self::mac_for(device_id, session, nonce, secret)
                .finalize()
                .into_bytes(),
        );
        Hello {
            device_id,
            session,
            mac,
        }
    }

    fn mac_for(
        device_id: u64,
        session: u64,
        nonce: &[u8; NONCE_LEN],
        secret: &Secret,
    ) -> HmacSha256 {
        let mut m = secret.mac();
        m.update(HELLO_LABEL);
        m.update(&device_id.to_be_bytes());
        m.update(&session.to_be_bytes());
        m.update(nonce);
        m
    }

    /// Checks the proof against the session's nonce, in constant time.
    pub fn verify(&self, nonce: &[u8; NONCE_LEN], secret: &Secret) -> Result<(), Error> {
        Self::mac_for(self.device_id, self.session, nonce, secret)
            .verify_slice(&self.mac)
            .map_err(|_| Error::BadMac)
    }

    /// Parses exactly [`HELLO_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Hello, Error> {
        if b.len() < HELLO_LEN {
            return Err(Error::Truncated);
        }
        if b[0..4] != BACK_MAGIC {
            return Err(Error::BadMagic);
        }
        if b[4] != VERSION {
            return Err(Error::UnknownVersion(b[4]));
        }
        if b[5] != 1 {
            return Err(Error::UnknownType(b[5]));
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&b[24..HELLO_LEN]);
        Ok(Hello {
            device_id: u64_at(8),
            session: u64_at(16),
            mac,
        })
    }

    /// The [`HELLO_LEN`] bytes.
    pub fn emit(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&BACK_MAGIC);
        b[4] = VERSION;
        b[5] = 1;
        b[8..16].copy_from_slice(&self.device_id.to_be_bytes());
        b[16..24].copy_from_slice(&self.session.to_be_bytes());
        b[24..].copy_from_slice(&self.mac);
        b
    }
}

/// The relay's answer to a [`Hello`]: magic "HNRB", version, type 2, a [`HelloStatus`] code, 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelloStatus {
    /// 0: accepted; HTTP/1.1 follows, the relay is the client.
    Ok,
    /// 1: no pending session with that id for that device (forged, replayed, or answered already).
    UnknownSession,
    /// 2: the MAC does not prove the session's nonce.
    BadProof,
    /// 3: the session waited too long for its back-connection; the viewer was answered already.
    Expired,
}

impl HelloStatus {
    /// The code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            HelloStatus::Ok => 0,
            HelloStatus::UnknownSession => 1,
            HelloStatus::BadProof => 2,
            HelloStatus::Expired => 3,
        }
    }

    /// Parses the [`HELLO_ANSWER_LEN`] bytes of an answer.
    pub fn parse(b: &[u8]) -> Result<HelloStatus, Error> {
        if b.len() < HELLO_ANSWER_LEN {
            return Err(Error::Truncated);
        }
        if b[0..4] != BACK_MAGIC {
            return Err(Error::BadMagic);
        }
        if b[4] != VERSION {
            return Err(Error::UnknownVersion(b[4]));
        }
        if b[5] != 2 {
            return Err(Error::UnknownType(b[5]));
        }
        match b[6] {
            0 => Ok(HelloStatus::Ok),
            1 => Ok(HelloStatus::UnknownSession),
            2 => Ok(HelloStatus::BadProof),
            3 => Ok(HelloStatus::Expired),
            _ => Err(Error::InvalidField(b[6])),
        }
    }

    /// The [`HELLO_ANSWER_LEN`] bytes.
    pub fn emit(self) -> [u8; HELLO_ANSWER_LEN] {
        let mut b = [0u8; HELLO_ANSWER_LEN];
        b[0..4].copy_from_slice(&BACK_MAGIC);
        b[4] = VERSION;
        b[5] = 2;
        b[6] = self.code();
        b
    }
}
