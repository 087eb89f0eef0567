//! Golden bytes of the ubus messages the client sends and receives, laid out by hand
//! from openwrt/ubus (`ubusmsg.h`, `libubus-req.c`, `ubusd_proto.c`, `ubusd_event.c`)
//! and libubox (`blob.h`, `blobmsg.h`): header `version type seq(BE16) peer(BE32)`, then
//! one blob attribute with id 0 holding the message attributes, each padded to 4 bytes.

use mpbond_agent::ubus::blob::{Table, Value};
use mpbond_agent::ubus::wire::{self, msg, Decoded, Message, MsgAttr, WireError};
use serde_json::{json, Value as Json};

fn table(v: Json) -> Table {
    Table::from_json(v.as_object().expect("an object"))
}

/// Encode `m`, compare with `want`, and decode `want` back to `m`.
fn golden(m: &Message, want: &[u8]) {
    let bytes = m.encode().expect("encode");
    assert_eq!(hex(&bytes), hex(want), "{m:?}");
    match wire::decode(want).expect("decode") {
        Decoded::Complete { message, len } => {
            assert_eq!(len, want.len());
            assert_eq!(&message, m);
        }
        other => panic!("incomplete: {other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(4)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn hello_from_ubusd() {
    // ubusd_send_hello: empty blob_buf, type HELLO, seq 0, peer = the client id.
    let want = [0, msg::HELLO, 0, 0, 0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 4];
    golden(&Message::new(msg::HELLO, 0, 0x1234_abcd, vec![]), &want);
}

#[test]
fn lookup_request() {
    // ubus_lookup_id: blob_put_string(OBJPATH, "network.interface"), peer 0.
    let mut want = vec![0, msg::LOOKUP, 0, 1, 0, 0, 0, 0];
    want.extend_from_slice(&[0, 0, 0, 0x1c]); // 4 + 24
    want.extend_from_slice(&[0x02, 0, 0, 0x16]); // OBJPATH, 4 + 18
    want.extend_from_slice(b"network.interface\0\0\0");
    let m = Message::new(
        msg::LOOKUP,
        1,
        0,
        vec![MsgAttr::ObjPath("network.interface".into())],
    );
    golden(&m, &want);
}

#[test]
fn status_reply() {
    // ubusd's retmsg: blob_put_int32(STATUS, code), seq and peer of the request.
    let want = [
        0,
        msg::STATUS,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0x0c,
        0x01,
        0,
        0,
        8,
        0,
        0,
        0,
        4,
    ];
    golden(
        &Message::new(msg::STATUS, 1, 0, vec![MsgAttr::Status(4)]),
        &want,
    );
}

#[test]
fn invoke_dump_with_empty_arguments() {
    // ubus_invoke_async_fd: OBJID, METHOD, DATA (the empty table), peer = object id.
    let mut want = vec![0, msg::INVOKE, 0, 2, 0x0b, 0xad, 0xca, 0xfe];
    want.extend_from_slice(&[0, 0, 0, 0x1c]); // 4 + 8 + 12 + 4
    want.extend_from_slice(&[0x03, 0, 0, 8, 0x0b, 0xad, 0xca, 0xfe]);
    want.extend_from_slice(&[0x04, 0, 0, 9]);
    want.extend_from_slice(b"dump\0\0\0\0");
    want.extend_from_slice(&[0x07, 0, 0, 4]);
    let m = Message::new(
        msg::INVOKE,
        2,
        0x0bad_cafe,
        vec![
            MsgAttr::ObjId(0x0bad_cafe),
            MsgAttr::Method("dump".into()),
            MsgAttr::Data(Table::new()),
        ],
    );
    golden(&m, &want);
}

#[test]
fn data_reply_with_a_blobmsg_table() {
    // ubus_send_reply: OBJID, DATA {"up": true, "l3_device": "eth9"}; blobmsg members
    // are extended attributes (bit 31) with a padded name header.
    let mut want = vec![0, msg::DATA, 0, 2, 0x0b, 0xad, 0xca, 0xfe];
    want.extend_from_slice(&[0, 0, 0, 0x38]); // 4 + 8 + 44
    want.extend_from_slice(&[0x03, 0, 0, 8, 0x0b, 0xad, 0xca, 0xfe]);
    want.extend_from_slice(&[0x07, 0, 0, 0x2c]); // DATA, 4 + 24 + 16
                                                 // "l3_device": STRING (3), 4 + pad(2+9+1)=12 + 5 = 21, padded to 24
    want.extend_from_slice(&[0x83, 0, 0, 0x15, 0, 9]);
    want.extend_from_slice(b"l3_device\0");
    want.extend_from_slice(b"eth9\0\0\0\0");
    // "up": BOOL = INT8 (7), 4 + pad(2+2+1)=8 + 1 = 13, padded to 16
    want.extend_from_slice(&[0x87, 0, 0, 0x0d, 0, 2]);
    want.extend_from_slice(b"up\0\0\0\0");
    want.extend_from_slice(&[1, 0, 0, 0]);
    let m = Message::new(
        msg::DATA,
        2,
        0x0bad_cafe,
        vec![
            MsgAttr::ObjId(0x0bad_cafe),
            MsgAttr::Data(table(json!({"l3_device": "eth9", "up": true}))),
        ],
    );
    golden(&m, &want);
}

#[test]
fn event_register_and_delivery() {
    // ubus_register_event_handler: invoke "register" on object 1 with
    // blobmsg_add_u32("object", id) and blobmsg_add_string("pattern", ...).
    let mut want = vec![0, msg::INVOKE, 0, 3, 0, 0, 0, 1];
    want.extend_from_slice(&[0, 0, 0, 0x58]); // 4 + 8 + 16 + 60
    want.extend_from_slice(&[0x03, 0, 0, 8, 0, 0, 0, 1]);
    want.extend_from_slice(&[0x04, 0, 0, 0x0d]);
    want.extend_from_slice(b"register\0\0\0\0");
    want.extend_from_slice(&[0x07, 0, 0, 0x3c]); // DATA, 4 + 20 + 36
    want.extend_from_slice(&[0x85, 0, 0, 0x14, 0, 6]);
    want.extend_from_slice(b"object\0\0\0\0");
    want.extend_from_slice(&[0x20, 0, 0x01, 0x01]);
    want.extend_from_slice(&[0x83, 0, 0, 0x22, 0, 7]);
    want.extend_from_slice(b"pattern\0\0\0");
    want.extend_from_slice(b"network.interface\0\0\0");
    let m = Message::new(
        msg::INVOKE,
        3,
        wire::EVENT_OBJECT,
        vec![
            MsgAttr::ObjId(1),
            MsgAttr::Method("register".into()),
            MsgAttr::Data(
                Table::new()
                    .with("object", Value::Int32(0x2000_0101))
                    .with("pattern", Value::String("network.interface".into())),
            ),
        ],
    );
    golden(&m, &want);

    // ubusd_send_event_msg: INVOKE to the listener, peer 0, OBJID first.
    let m = Message::new(
        msg::INVOKE,
        7,
        0,
        vec![
            MsgAttr::ObjId(0x2000_0101),
            MsgAttr::Method("network.interface".into()),
            MsgAttr::Data(table(json!({"action": "ifup", "interface": "wan"}))),
        ],
    );
    let bytes = m.encode().expect("encode");
    // "action": 4 + pad(2+6+1)=12 + 5 ("ifup\0") = 21 -> 24;
    // "interface": 4 + pad(2+9+1)=12 + 4 ("wan\0") = 20.
    assert_eq!(
        &bytes[..12],
        &[0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0x54],
        "4 + 8 + 24 + 48"
    );
    assert_eq!(&bytes[44..48], &[0x07, 0, 0, 0x30], "DATA = 4 + 24 + 20");
    assert_eq!(&bytes[48..52], &[0x83, 0, 0, 0x15]);
    assert_eq!(&bytes[72..76], &[0x83, 0, 0, 0x14]);
    assert_eq!(bytes.len(), 8 + 4 + 8 + 24 + 48);
}

#[test]
fn partial_input_is_incomplete_and_bad_input_an_error() {
    let m = Message::new(msg::STATUS, 9, 0, vec![MsgAttr::Status(0)]);
    let bytes = m.encode().expect("encode");
    for cut in 0..bytes.len() {
        assert!(
            matches!(wire::decode(&bytes[..cut]), Ok(Decoded::Incomplete { .. })),
            "cut at {cut}"
        );
    }
    let mut v1 = bytes.clone();
    v1[0] = 1;
    assert_eq!(wire::decode(&v1), Err(WireError::Version(1)));
    let short = [0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
    assert_eq!(wire::decode(&short), Err(WireError::BadLength(3)));
    let huge = [0, 2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff];
    assert!(matches!(wire::decode(&huge), Err(WireError::TooLong(_))));
}

#[test]
fn an_attribute_of_the_wrong_blob_type_reads_as_absent() {
    // blob_parse with ubus_policy leaves it out: a STATUS of 2 bytes, an OBJID of 8, a
    // METHOD without its NUL.
    let mut bad = vec![0, msg::STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
    bad.extend_from_slice(&[0x01, 0, 0, 6, 0, 0, 0, 0]);
    bad.extend_from_slice(&[0x03, 0, 0, 12, 0, 0, 0, 0, 0x80, 0, 0, 1]);
    bad.extend_from_slice(&[0x04, 0, 0, 8, b'd', b'u', b'm', b'p']);
    let Ok(Decoded::Complete { message, .. }) = wire::decode(&bad) else {
        panic!("decodes");
    };
    assert_eq!(message.status(), None);
    assert_eq!(message.objid(), None);
    assert_eq!(message.method(), None);
    assert!(message
        .attrs
        .iter()
        .all(|a| matches!(a, MsgAttr::Other { .. })));
}

#[test]
fn every_attribute_has_the_blob_type_of_the_policy() {
    // ubus_policy: INT32 ids and codes (unsigned on the wire), INT8 flags, NUL-terminated
    // strings; each round-trips with that payload length.
    let attrs = vec![
        MsgAttr::Status(7),
        MsgAttr::ObjPath("a".into()),
        MsgAttr::ObjId(0xfedc_ba98),
        MsgAttr::Method("m".into()),
        MsgAttr::ObjType(0x8000_0001),
        MsgAttr::Target(0xffff_ffff),
        MsgAttr::Active(true),
        MsgAttr::NoReply(true),
        MsgAttr::User("root".into()),
        MsgAttr::Group("root".into()),
    ];
    let m = Message::new(msg::DATA, 1, 0x9000_0000, attrs);
    let bytes = m.encode().expect("encode");
    assert_eq!(&bytes[4..8], &[0x90, 0, 0, 0], "peer as u32");
    let Ok(Decoded::Complete { message, .. }) = wire::decode(&bytes) else {
        panic!("decodes");
    };
    assert_eq!(message, m);
    let lens: Vec<(u8, usize)> = mpbond_agent::ubus::blob::attrs(&bytes[12..])
        .expect("attrs")
        .iter()
        .map(|a| (a.id, a.payload.len()))
        .collect();
    assert_eq!(
        lens,
        [
            (1, 4),
            (2, 2),
            (3, 4),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 1),
            (10, 1),
            (12, 5),
            (13, 5)
        ]
    );
}

#[test]
fn random_bytes_never_panic() {
    let seed_msg = Message::new(
        msg::DATA,
        5,
        1,
        vec![
            MsgAttr::ObjId(1),
            MsgAttr::Data(table(json!({"interface": [{"interface": "wan", "up": true,
                "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": "192.0.2.1"}]}]}))),
        ],
    );
    let base = seed_msg.encode().expect("encode");
    let mut rng = mpbond_testkit::Xorshift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = || rng.next_u64();
    for _ in 0..50_000 {
        let mut b = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let cut = (next() as usize) % (b.len() + 1);
        let _ = wire::decode(&b[..cut]);
    }
    for _ in 0..5_000 {
        let len = (next() % 96) as usize;
        let b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = wire::decode(&b);
    }
}
