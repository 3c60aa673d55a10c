//! Confluent's wire format: byte 0 (magic), the schema id as a 4-byte big-endian integer, then
//! the Avro binary datum. Every standard Kafka serializer and deserializer speaks it.

const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record is {0} bytes, shorter than the 5-byte Confluent header")]
    TooShort(usize),
    #[error("record starts with byte {0}, not the Confluent magic byte 0")]
    BadMagic(u8),
}

/// Prefixes an Avro datum with the wire-format header.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = header(schema_id, datum.len());
    out.extend_from_slice(datum);
    out
}

/// A record's header alone, with room for a datum of `capacity` bytes to be written after it.
pub fn header(schema_id: u32, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out
}

/// Splits a record into its schema id and Avro datum.
pub fn unframe(record: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if record.len() < HEADER_LEN {
        return Err(WireError::TooShort(record.len()));
    }
    if record[0] != MAGIC {
        return Err(WireError::BadMagic(record[0]));
    }
    let id = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
    Ok((id, &record[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_unframes() {
        let framed = frame(258, b"avro");
        assert_eq!(framed[..5], [0, 0, 0, 1, 2]);
        assert_eq!(unframe(&framed), Ok((258, &b"avro"[..])));
    }

    #[test]
    fn refuses_foreign_records() {
        assert_eq!(unframe(b"\x00\x01"), Err(WireError::TooShort(2)));
        assert_eq!(unframe(b"{\"a\":1}"), Err(WireError::BadMagic(b'{')));
    }
}
