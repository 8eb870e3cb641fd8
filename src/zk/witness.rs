//! The circuit's witness, computed by running circom's witness WebAssembly
//! (`circuits/artifacts/edgent.wasm`) in the `wasmi` interpreter. This mirrors snarkjs's
//! `witness_calculator.js`: write each input through the shared memory window, set it by the
//! FNV-1a hash of its name, then read the witness back limb by limb.

use std::sync::OnceLock;

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};
use wasmi::{Caller, Engine, Extern, Instance, Linker, Module, Store, TypedFunc};

use super::error::ZkError;

static WASM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/circuits/artifacts/edgent.wasm"
));

/// One named input signal with its values (an array input has several).
pub(crate) struct Input<'a> {
    pub name: &'a str,
    pub values: Vec<BigInt<4>>,
}

/// Host state: the error text the program prints before it raises an exception.
#[derive(Default)]
struct Host {
    message: String,
}

fn compiled() -> Result<&'static (Engine, Module), ZkError> {
    static MODULE: OnceLock<Result<(Engine, Module), String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let engine = Engine::default();
            Module::new(&engine, WASM)
                .map(|m| (engine, m))
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ZkError::Witness(format!("cannot load the witness program: {e}")))
}

fn wasm_err(e: impl std::fmt::Display) -> ZkError {
    ZkError::Witness(e.to_string())
}

/// Reads the program's pending message (null-terminated, one char per call).
fn read_message(caller: &mut Caller<'_, Host>) -> String {
    let Some(f) = caller
        .get_export("getMessageChar")
        .and_then(Extern::into_func)
    else {
        return String::new();
    };
    let Ok(f) = f.typed::<(), i32>(&caller) else {
        return String::new();
    };
    let mut s = String::new();
    // A bound keeps a misbehaving program from looping forever.
    for _ in 0..4096 {
        match f.call(&mut *caller, ()) {
            Ok(0) | Err(_) => break,
            Ok(c) => s.push(char::from_u32(c as u32).unwrap_or('?')),
        }
    }
    s
}

fn exception_text(code: i32) -> &'static str {
    match code {
        1 => "signal not found",
        2 => "too many signals set",
        3 => "signal already set",
        4 => "assert failed",
        5 => "not enough memory",
        6 => "input signal array access exceeds the size",
        7 => "out of bounds array access",
        _ => "unknown error",
    }
}

/// 64-bit FNV-1a of a signal name, as circom indexes its inputs.
fn fnv1a(name: &str) -> (i32, i32) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h >> 32) as u32 as i32, h as u32 as i32)
}

/// Computes the full witness (the constant 1, then the public signals, then the rest) for the
/// given inputs. Values must already be below the field's modulus.
pub(crate) fn calculate(inputs: &[Input<'_>]) -> Result<Vec<Fr>, ZkError> {
    let (engine, module) = compiled()?;
    let mut store = Store::new(engine, Host::default());
    let mut linker = <Linker<Host>>::new(engine);
    linker
        .func_wrap(
            "runtime",
            "exceptionHandler",
            |caller: Caller<'_, Host>, code: i32| -> Result<(), wasmi::Error> {
                let detail = caller.data().message.trim().to_string();
                Err(wasmi::Error::new(format!(
                    "{} {detail}",
                    exception_text(code)
                )))
            },
        )
        .map_err(wasm_err)?;
    linker
        .func_wrap(
            "runtime",
            "printErrorMessage",
            |mut caller: Caller<'_, Host>| {
                let m = read_message(&mut caller);
                let data = caller.data_mut();
                data.message.push_str(&m);
                data.message.push('\n');
            },
        )
        .map_err(wasm_err)?;
    linker
        .func_wrap(
            "runtime",
            "writeBufferMessage",
            |mut caller: Caller<'_, Host>| {
                // circom `log()` output; our circuit logs nothing, keep it at trace level.
                let m = read_message(&mut caller);
                tracing::trace!(message = %m, "circuit log");
            },
        )
        .map_err(wasm_err)?;
    linker
        .func_wrap("runtime", "showSharedRWMemory", |_: Caller<'_, Host>| {})
        .map_err(wasm_err)?;
    let instance = linker
        .instantiate_and_start(&mut store, module)
        .map_err(wasm_err)?;

    let e = Exports::new(&instance, &store)?;
    let n32 = e.field_num_len32.call(&mut store, ()).map_err(wasm_err)?;
    if n32 != 8 {
        return Err(ZkError::Witness(format!(
            "witness program uses {n32} limbs per element, expected 8 (BN254)"
        )));
    }
    e.get_raw_prime.call(&mut store, ()).map_err(wasm_err)?;
    let prime = read_shared(&e, &mut store)?;
    if prime != Fr::MODULUS {
        return Err(ZkError::Witness(
            "witness program is not over BN254's scalar field".into(),
        ));
    }

    e.init.call(&mut store, 1).map_err(wasm_err)?;
    let mut set = 0i32;
    for input in inputs {
        let (msb, lsb) = fnv1a(input.name);
        let size = e
            .input_signal_size
            .call(&mut store, (msb, lsb))
            .map_err(wasm_err)?;
        if size < 0 || size as usize != input.values.len() {
            return Err(ZkError::Witness(format!(
                "input {} has {} values, the circuit expects {size}",
                input.name,
                input.values.len()
            )));
        }
        for (i, v) in input.values.iter().enumerate() {
            for (j, limb) in v.0.iter().enumerate() {
                e.write_shared
                    .call(&mut store, (2 * j as i32, *limb as u32 as i32))
                    .map_err(wasm_err)?;
                e.write_shared
                    .call(&mut store, (2 * j as i32 + 1, (*limb >> 32) as u32 as i32))
                    .map_err(wasm_err)?;
            }
            e.set_input
                .call(&mut store, (msb, lsb, i as i32))
                .map_err(wasm_err)?;
            set += 1;
        }
    }
    let needed = e.input_size.call(&mut store, ()).map_err(wasm_err)?;
    if set < needed {
        return Err(ZkError::Witness(format!(
            "only {set} of {needed} inputs were set"
        )));
    }

    let size = e.witness_size.call(&mut store, ()).map_err(wasm_err)?;
    let mut witness = Vec::with_capacity(size.max(0) as usize);
    for i in 0..size {
        e.get_witness.call(&mut store, i).map_err(wasm_err)?;
        let v = read_shared(&e, &mut store)?;
        witness.push(
            Fr::from_bigint(v)
                .ok_or_else(|| ZkError::Witness(format!("witness element {i} out of range")))?,
        );
    }
    Ok(witness)
}

struct Exports {
    field_num_len32: TypedFunc<(), i32>,
    get_raw_prime: TypedFunc<(), ()>,
    read_shared: TypedFunc<i32, i32>,
    write_shared: TypedFunc<(i32, i32), ()>,
    init: TypedFunc<i32, ()>,
    input_signal_size: TypedFunc<(i32, i32), i32>,
    set_input: TypedFunc<(i32, i32, i32), ()>,
    input_size: TypedFunc<(), i32>,
    witness_size: TypedFunc<(), i32>,
    get_witness: TypedFunc<i32, ()>,
}

impl Exports {
    fn new(instance: &Instance, store: &Store<Host>) -> Result<Self, ZkError> {
        macro_rules! f {
            ($name:literal) => {
                instance
                    .get_typed_func(store, $name)
                    .map_err(|e| ZkError::Witness(format!("export {}: {e}", $name)))?
            };
        }
        Ok(Exports {
            field_num_len32: f!("getFieldNumLen32"),
            get_raw_prime: f!("getRawPrime"),
            read_shared: f!("readSharedRWMemory"),
            write_shared: f!("writeSharedRWMemory"),
            init: f!("init"),
            input_signal_size: f!("getInputSignalSize"),
            set_input: f!("setInputSignal"),
            input_size: f!("getInputSize"),
            witness_size: f!("getWitnessSize"),
            get_witness: f!("getWitness"),
        })
    }
}

/// Reads the 8 little-endian 32-bit limbs of the shared memory window.
fn read_shared(e: &Exports, store: &mut Store<Host>) -> Result<BigInt<4>, ZkError> {
    let mut limbs = [0u64; 4];
    for (j, limb) in limbs.iter_mut().enumerate() {
        let lo = e
            .read_shared
            .call(&mut *store, 2 * j as i32)
            .map_err(wasm_err)? as u32;
        let hi = e
            .read_shared
            .call(&mut *store, 2 * j as i32 + 1)
            .map_err(wasm_err)? as u32;
        *limb = u64::from(lo) | (u64::from(hi) << 32);
    }
    Ok(BigInt(limbs))
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv_matches_circom_for_a_known_name() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(fnv1a("a"), (0xaf63dc4c_u32 as i32, 0x8601ec8c_u32 as i32));
    }
}
