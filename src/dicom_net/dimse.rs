//! DIMSE messages over an association: the command sets of C-ECHO and C-STORE (always implicit
//! VR little endian), and one whole message (command + data set) gathered from P-DATA PDUs under
//! a size limit.

use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;

/// Command Field (0000,0100) values used here.
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type (0000,0800): no data set follows the command.
const NO_DATA_SET: u16 = 0x0101;
/// Command Data Set Type: a data set follows (any value other than 0x0101).
const DATA_SET: u16 = 0x0000;

/// Status (0000,0900) values used here.
pub const SUCCESS: u16 = 0x0000;
/// Refused: out of resources (here: the instance could not be kept on disk).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: the data set does not match the SOP class, or cannot be understood.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;

/// A command set as read from the wire: the fields this node acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    /// The message this one answers (responses).
    pub responding_to: Option<u16>,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// Whether a data set follows the command.
    pub has_data_set: bool,
    pub status: Option<u16>,
}

/// Why a message could not be taken from the association.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the association broke: {0}")]
    Association(#[from] dicom_ul::association::Error),
    #[error("the peer ended the association (release) in the middle of a message")]
    Released,
    #[error("the peer aborted the association")]
    Aborted,
    #[error("the peer sent a {0} PDU in the middle of a message")]
    Unexpected(&'static str),
    #[error("the data set is larger than the {limit} bytes this device accepts")]
    TooLarge { limit: usize },
    #[error("the command set cannot be read: {0}")]
    BadCommand(String),
}

/// One whole DIMSE message: its command, the presentation context it came on, and the data set
/// bytes exactly as sent (in that context's transfer syntax).
#[derive(Debug)]
pub struct Message {
    pub context_id: u8,
    pub command: Command,
    pub data_set: Vec<u8>,
}

/// What ended a wait for the next message.
#[derive(Debug)]
pub enum Next {
    Message(Message),
    /// The peer asked to release the association (a normal end between messages).
    Release,
    /// The peer aborted, or closed the connection between messages.
    Closed,
}

/// Anything PDUs can be received from (the server and client associations of `dicom_ul`).
pub trait ReceivePdu {
    fn receive_pdu(&mut self) -> Result<Pdu, dicom_ul::association::Error>;
}

impl<S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket> ReceivePdu
    for dicom_ul::association::ServerAssociation<S>
{
    fn receive_pdu(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        self.receive()
    }
}

impl<S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket> ReceivePdu
    for dicom_ul::association::ClientAssociation<S>
{
    fn receive_pdu(&mut self) -> Result<Pdu, dicom_ul::association::Error> {
        self.receive()
    }
}

/// Receives the next whole message. The data set may not grow beyond `max_data_set` bytes: a
/// larger one ends with `TooLarge` as soon as the limit is passed, before more is held.
pub fn receive_message(
    association: &mut impl ReceivePdu,
    max_data_set: usize,
) -> Result<Next, MessageError> {
    let mut command_bytes: Vec<u8> = Vec::new();
    let mut command: Option<(u8, Command)> = None;
    let mut data_set: Vec<u8> = Vec::new();
    let mut started = false;
    loop {
        let pdu = match association.receive_pdu() {
            Ok(pdu) => pdu,
            Err(dicom_ul::association::Error::ConnectionClosed { .. }) if !started => {
                return Ok(Next::Closed)
            }
            Err(e) => return Err(e.into()),
        };
        let values = match pdu {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ if !started => return Ok(Next::Release),
            Pdu::ReleaseRQ => return Err(MessageError::Released),
            Pdu::AbortRQ { .. } if !started => return Ok(Next::Closed),
            Pdu::AbortRQ { .. } => return Err(MessageError::Aborted),
            other => return Err(MessageError::Unexpected(pdu_name(&other))),
        };
        started = true;
        for value in values {
            match value.value_type {
                PDataValueType::Command => {
                    command_bytes.extend_from_slice(&value.data);
                    if command_bytes.len() > MAX_COMMAND_BYTES {
                        return Err(MessageError::BadCommand("it is too long".into()));
                    }
                    if value.is_last {
                        let c = read_command(&command_bytes)?;
                        if !c.has_data_set {
                            return Ok(Next::Message(Message {
                                context_id: value.presentation_context_id,
                                command: c,
                                data_set: Vec::new(),
                            }));
                        }
                        command = Some((value.presentation_context_id, c));
                    }
                }
                PDataValueType::Data => {
                    if data_set.len() + value.data.len() > max_data_set {
                        return Err(MessageError::TooLarge {
                            limit: max_data_set,
                        });
                    }
                    data_set.extend_from_slice(&value.data);
                    if value.is_last {
                        let Some((context_id, command)) = command.take() else {
                            return Err(MessageError::BadCommand(
                                "a data set came before its command".into(),
                            ));
                        };
                        return Ok(Next::Message(Message {
                            context_id,
                            command,
                            data_set,
                        }));
                    }
                }
            }
        }
    }
}

/// A command set is a few hundred bytes; anything near this is not one.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::Unknown { .. } => "unknown",
        _ => "unexpected",
    }
}

/// Reads a command set (implicit VR little endian).
pub fn read_command(bytes: &[u8]) -> Result<Command, MessageError> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| MessageError::BadCommand(e.to_string()))?;
    let u16_of = |tag| obj.get(tag).and_then(|e| e.to_int::<u16>().ok());
    let str_of = |tag| {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    let field =
        u16_of(tags::COMMAND_FIELD).ok_or(MessageError::BadCommand("no command field".into()))?;
    let sop_class_uid = match str_of(tags::AFFECTED_SOP_CLASS_UID) {
        s if s.is_empty() => str_of(tags::REQUESTED_SOP_CLASS_UID),
        s => s,
    };
    Ok(Command {
        field,
        message_id: u16_of(tags::MESSAGE_ID).unwrap_or(0),
        responding_to: u16_of(tags::MESSAGE_ID_BEING_RESPONDED_TO),
        sop_class_uid,
        sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID),
        has_data_set: u16_of(tags::COMMAND_DATA_SET_TYPE).unwrap_or(NO_DATA_SET) != NO_DATA_SET,
        status: u16_of(tags::STATUS),
    })
}

/// Encodes a command set: its elements in implicit VR little endian, led by the group length.
fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let body = InMemDicomObject::from_element_iter(elements);
    let mut bytes = Vec::new();
    body.write_dataset_with_ts(&mut bytes, &ts)
        .expect("a command set of plain values always encodes");
    let length = DataElement::new(
        tags::COMMAND_GROUP_LENGTH,
        VR::UL,
        PrimitiveValue::from(bytes.len() as u32),
    );
    let mut out = Vec::with_capacity(bytes.len() + 12);
    InMemDicomObject::from_element_iter([length])
        .write_dataset_with_ts(&mut out, &ts)
        .expect("a group length always encodes");
    out.extend_from_slice(&bytes);
    out
}

fn uid_element(tag: dicom_core::Tag, uid: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

fn us_element(tag: dicom_core::Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, dicom_value!(U16, [value]))
}

/// C-ECHO-RSP to message `message_id`.
pub fn echo_response(message_id: u16) -> Vec<u8> {
    encode_command(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, VERIFICATION),
        us_element(tags::COMMAND_FIELD, C_ECHO_RSP),
        us_element(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us_element(tags::STATUS, SUCCESS),
    ])
}

/// C-STORE-RSP to `request` with `status`.
pub fn store_response(request: &Command, status: u16) -> Vec<u8> {
    encode_command(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, &request.sop_class_uid),
        us_element(tags::COMMAND_FIELD, C_STORE_RSP),
        us_element(tags::MESSAGE_ID_BEING_RESPONDED_TO, request.message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us_element(tags::STATUS, status),
        uid_element(tags::AFFECTED_SOP_INSTANCE_UID, &request.sop_instance_uid),
    ])
}

/// C-STORE-RQ for one instance (medium priority); its data set follows.
pub fn store_request(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode_command(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us_element(tags::COMMAND_FIELD, C_STORE_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::PRIORITY, 0),
        us_element(tags::COMMAND_DATA_SET_TYPE, DATA_SET),
        uid_element(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ])
}

/// One P-DATA PDU carrying a whole command set.
pub fn command_pdu(context_id: u8, command: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command,
        }],
    }
}

/// The Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Whether a status is a success (0000) or a warning (0001, Bxxx): the instance was stored.
pub fn stored(status: u16) -> bool {
    status == SUCCESS || status == 0x0001 || (status & 0xF000) == 0xB000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_request_reads_back_as_written() {
        let bytes = store_request(7, "1.2.840.10008.5.1.4.1.1.1", "1.2.3.4");
        let c = read_command(&bytes).unwrap();
        assert_eq!(c.field, C_STORE_RQ);
        assert_eq!(c.message_id, 7);
        assert_eq!(c.sop_class_uid, "1.2.840.10008.5.1.4.1.1.1");
        assert_eq!(c.sop_instance_uid, "1.2.3.4");
        assert!(c.has_data_set);
        // The group length counts the bytes after it (12 bytes of its own element).
        let length = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        assert_eq!(length as usize, bytes.len() - 12);
    }

    #[test]
    fn a_store_response_answers_its_request() {
        let request = read_command(&store_request(9, "1.2.840.10008.5.1.4.1.1.7", "1.9")).unwrap();
        let response = read_command(&store_response(&request, OUT_OF_RESOURCES)).unwrap();
        assert_eq!(response.field, C_STORE_RSP);
        assert_eq!(response.responding_to, Some(9));
        assert_eq!(response.status, Some(OUT_OF_RESOURCES));
        assert_eq!(response.sop_instance_uid, "1.9");
        assert!(!response.has_data_set);
        assert!(!stored(OUT_OF_RESOURCES) && stored(SUCCESS) && stored(0xB007));
    }

    #[test]
    fn garbage_is_not_a_command() {
        assert!(read_command(b"\x01\x02\x03").is_err());
    }
}
