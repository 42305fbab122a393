//! Feeds arbitrary bytes to the GGUF reader the way the loaders use it: the whole file in hand,
//! a prefix of it (the browser's streaming read), and a file that claims to be longer than the
//! bytes we have. Besides "never panics", it checks the contracts callers rely on:
//!
//! - `NeedMore { needed }` always asks for more than the prefix and no more than the file;
//! - a prefix never gives a different answer from the whole file, only `NeedMore` or the same;
//! - a `Complete` header only describes tensors that lie inside the file, without overlap, so
//!   routing the file's bytes hands every tensor exactly its bytes, in order.

#![no_main]

use hearth::gguf::{parse, GgufFile, Parsed};
use hearth::model::config::LlamaConfig;
use hearth::model::loader::{LoadError, StreamRouter, TensorSink};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let whole = parse(data, len);
    let whole = match whole {
        Ok(Parsed::Complete(file)) => {
            exercise(&file, data);
            Ok(file)
        }
        Ok(Parsed::NeedMore { needed }) => panic!("the whole file needs more ({needed} bytes)"),
        Err(e) => Err(e),
    };

    // Prefix use: start at a cut point chosen by the last byte (tensor data in real files, so
    // mutating it does not disturb the header) and follow `needed` like the loader does.
    let mut cut = data.last().map_or(0, |&b| b as usize * data.len() / 255);
    for _ in 0..16 {
        match parse(&data[..cut], len) {
            Ok(Parsed::NeedMore { needed }) => {
                assert!(needed > cut as u64 && needed <= len, "needed {needed} with {cut} of {len} bytes");
                cut = needed as usize;
            }
            Ok(Parsed::Complete(file)) => {
                let whole = whole.as_ref().expect("a prefix parsed although the whole file fails");
                assert_same(&file, whole);
                break;
            }
            Err(e) => {
                assert_eq!(Some(&e), whole.as_ref().err(), "a prefix fails differently from the whole file");
                break;
            }
        }
    }

    // A file longer than what we hold: the last eight bytes say how much longer.
    if let Some(tail) = data.len().checked_sub(8).map(|at| &data[at..]) {
        let extra = u64::from_le_bytes(tail.try_into().expect("eight bytes"));
        let file_len = len.saturating_add(extra);
        match parse(data, file_len) {
            Ok(Parsed::NeedMore { needed }) => assert!(needed > len && needed <= file_len),
            Ok(Parsed::Complete(file)) => {
                assert_eq!(file.file_len, file_len);
                exercise(&file, data);
            }
            Err(_) => {}
        }
    }
});

/// Everything a caller may do with a parsed header must be safe, and its figures consistent.
fn exercise(file: &GgufFile, data: &[u8]) {
    for (key, value) in &file.metadata {
        // By address: a NaN value is never equal to itself.
        assert!(file.get(key).is_some_and(|v| std::ptr::eq(v, value)), "key {key:?} indexes another value");
        let _ = (file.get_str(key), file.get_int(key), file.get_f64(key), file.get_bool(key));
        let _ = value.to_json_summary();
        if let Ok(Some(array)) = file.get_array(key) {
            let _ = (array.len(), array.type_name(), array.to_i64_vec());
        }
    }
    assert!(file.data_offset % file.alignment == 0);
    for t in &file.tensors {
        assert_eq!(file.tensor(&t.name), Some(t));
        assert_eq!(t.ty.bytes_for(t.elements()), Some(t.size));
        assert_eq!(t.rows() * t.row_len(), t.elements());
        assert!(t.offset >= file.data_offset && t.end() <= file.file_len);
        assert!((t.offset - file.data_offset) % file.alignment == 0);
    }
    // Tensors do not overlap, so their total cannot exceed the file (nor overflow).
    assert!(file.tensor_bytes() <= file.file_len);
    let _ = LlamaConfig::from_gguf(file);

    // Route the bytes we have in small chunks; each tensor must get its bytes in order.
    let have = &data[..data.len().min(file.file_len as usize)];
    let mut sink = CheckingSink { got: vec![0; file.tensors.len()], sizes: file.tensors.iter().map(|t| t.size).collect() };
    let mut router = StreamRouter::new(file);
    for chunk in have.chunks(61) {
        router.push(chunk, &mut sink).expect("the checking sink never fails");
    }
    if have.len() as u64 == file.file_len {
        router.finish().expect("every tensor lies inside the file");
    }
}

fn assert_same(a: &GgufFile, b: &GgufFile) {
    assert_eq!(a.version, b.version);
    // Compared as text because `==` fails on NaN values, which both sides read from the same bytes.
    assert_eq!(format!("{:?}", a.metadata), format!("{:?}", b.metadata));
    assert_eq!(a.tensors, b.tensors);
    assert_eq!((a.alignment, a.data_offset, a.file_len), (b.alignment, b.data_offset, b.file_len));
}

struct CheckingSink {
    got: Vec<u64>,
    sizes: Vec<u64>,
}

impl TensorSink for CheckingSink {
    type Error = LoadError;
    fn write(&mut self, tensor: usize, offset: u64, bytes: &[u8]) -> Result<(), LoadError> {
        assert_eq!(offset, self.got[tensor], "tensor {tensor} got a gap or a repeat");
        self.got[tensor] += bytes.len() as u64;
        assert!(self.got[tensor] <= self.sizes[tensor], "tensor {tensor} got more than its size");
        Ok(())
    }
}
