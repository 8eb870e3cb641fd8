//! The circuit's witness, computed by running circom's witness WebAssembly
//! (`circuits/artifacts/edgent.wasm`) in the `wasmi` interpreter. This mirrors snarkjs's
//! `witness_calculator.js`: write each input through the shared memory window, set it by the
//! FNV-1a hash of its name, then read the witness back limb by limb.

use std::sync::{Mutex, OnceLock};

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};
use wasmi::{
    Caller, CompilationMode, Config, Engine, Extern, Instance, Linker, Memory, Module, Store,
    TypedFunc,
};

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
            // Eager: translate every function while loading (in `warm_up`), not on first call,
            // so the first proof is as fast as the others.
            let mut config = Config::default();
            config.compilation_mode(CompilationMode::Eager);
            let engine = Engine::new(&config);
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

/// One instantiated witness program with its store. Reused across proofs, as snarkjs's
/// `witness_calculator.js` reuses its instance: `init` resets the program's state before each
/// witness.
struct Runner {
    store: Store<Host>,
    e: Exports,
    memory: Memory,
    /// Byte address of the shared read/write window (one field element, 8 × 32-bit limbs).
    shared: usize,
}

/// Idle runners; a proof takes one (or makes one) and gives it back when it succeeded.
static RUNNERS: Mutex<Vec<Runner>> = Mutex::new(Vec::new());

/// Loads and instantiates the witness program once, so the first proof does not pay for it.
pub(crate) fn warm_up() -> Result<(), ZkError> {
    on_witness_thread(|| {
        let runner = take_runner()?;
        give_back(runner);
        Ok(())
    })
}

fn take_runner() -> Result<Runner, ZkError> {
    let idle = RUNNERS.lock().ok().and_then(|mut v| v.pop());
    match idle {
        Some(r) => Ok(r),
        None => new_runner(),
    }
}

fn give_back(runner: Runner) {
    if let Ok(mut v) = RUNNERS.lock() {
        v.push(runner);
    }
}

fn new_runner() -> Result<Runner, ZkError> {
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
    let memory = instance
        .get_memory(&store, "memory")
        .ok_or_else(|| ZkError::Witness("the witness program exports no memory".into()))?;
    let n32 = e.field_num_len32.call(&mut store, ()).map_err(wasm_err)?;
    if n32 != 8 {
        return Err(ZkError::Witness(format!(
            "witness program uses {n32} limbs per element, expected 8 (BN254)"
        )));
    }
    let shared = e.shared_start.call(&mut store, ()).map_err(wasm_err)? as u32 as usize;
    let mut runner = Runner {
        store,
        e,
        memory,
        shared,
    };
    // The window must be inside the memory, and the direct reads must agree with the
    // program's own accessor.
    runner
        .e
        .get_raw_prime
        .call(&mut runner.store, ())
        .map_err(wasm_err)?;
    let prime = runner.read_shared()?;
    let mut limbs = [0u64; 4];
    for (j, limb) in limbs.iter_mut().enumerate() {
        let lo = runner
            .e
            .read_shared
            .call(&mut runner.store, 2 * j as i32)
            .map_err(wasm_err)? as u32;
        let hi = runner
            .e
            .read_shared
            .call(&mut runner.store, 2 * j as i32 + 1)
            .map_err(wasm_err)? as u32;
        *limb = u64::from(lo) | (u64::from(hi) << 32);
    }
    if prime != Fr::MODULUS || BigInt(limbs) != Fr::MODULUS {
        return Err(ZkError::Witness(
            "witness program is not over BN254's scalar field".into(),
        ));
    }
    Ok(runner)
}

impl Runner {
    /// The shared window as a little-endian 256-bit number.
    fn read_shared(&self) -> Result<BigInt<4>, ZkError> {
        let bytes = self
            .memory
            .data(&self.store)
            .get(self.shared..self.shared + 32)
            .ok_or_else(|| ZkError::Witness("shared memory window out of bounds".into()))?;
        let mut limbs = [0u64; 4];
        for (limb, b) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            *limb = u64::from_le_bytes(a);
        }
        Ok(BigInt(limbs))
    }

    fn write_shared(&mut self, v: &BigInt<4>) -> Result<(), ZkError> {
        let bytes = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(self.shared..self.shared + 32)
            .ok_or_else(|| ZkError::Witness("shared memory window out of bounds".into()))?;
        for (limb, b) in v.0.iter().zip(bytes.chunks_exact_mut(8)) {
            b.copy_from_slice(&limb.to_le_bytes());
        }
        Ok(())
    }

    fn calculate(&mut self, inputs: &[Input<'_>]) -> Result<Vec<Fr>, ZkError> {
        self.store.data_mut().message.clear();
        self.e.init.call(&mut self.store, 1).map_err(wasm_err)?;
        let mut set = 0i32;
        for input in inputs {
            let (msb, lsb) = fnv1a(input.name);
            let size = self
                .e
                .input_signal_size
                .call(&mut self.store, (msb, lsb))
                .map_err(wasm_err)?;
            if size < 0 || size as usize != input.values.len() {
                return Err(ZkError::Witness(format!(
                    "input {} has {} values, the circuit expects {size}",
                    input.name,
                    input.values.len()
                )));
            }
            for (i, v) in input.values.iter().enumerate() {
                self.write_shared(v)?;
                self.e
                    .set_input
                    .call(&mut self.store, (msb, lsb, i as i32))
                    .map_err(wasm_err)?;
                set += 1;
            }
        }
        let needed = self
            .e
            .input_size
            .call(&mut self.store, ())
            .map_err(wasm_err)?;
        if set < needed {
            return Err(ZkError::Witness(format!(
                "only {set} of {needed} inputs were set"
            )));
        }

        let size = self
            .e
            .witness_size
            .call(&mut self.store, ())
            .map_err(wasm_err)?;
        let mut witness = Vec::with_capacity(size.max(0) as usize);
        for i in 0..size {
            self.e
                .get_witness
                .call(&mut self.store, i)
                .map_err(wasm_err)?;
            let v = self.read_shared()?;
            witness
                .push(Fr::from_bigint(v).ok_or_else(|| {
                    ZkError::Witness(format!("witness element {i} out of range"))
                })?);
        }
        Ok(witness)
    }
}

/// Stack of the thread that runs the witness program. wasmi's fast dispatch chains its
/// instruction handlers with tail calls, which LLVM emits in optimised builds of wasmi; with
/// debug assertions on (the `dev` profile) it keeps a native frame per interpreted instruction
/// and one witness needs over 100 MB of stack. The size is only reserved: pages are committed
/// as they are touched.
const WITNESS_STACK: usize = if cfg!(debug_assertions) {
    256 << 20
} else {
    16 << 20
};

/// Computes the full witness (the constant 1, then the public signals, then the rest) for the
/// given inputs. Values must already be below the field's modulus. Runs on a thread of its
/// own with a known stack size (see [`WITNESS_STACK`]), whatever the caller's stack.
pub(crate) fn calculate(inputs: &[Input<'_>]) -> Result<Vec<Fr>, ZkError> {
    on_witness_thread(|| {
        let mut runner = take_runner()?;
        let witness = runner.calculate(inputs)?;
        // Only a runner that finished cleanly goes back (after a trap its state is unknown).
        give_back(runner);
        Ok(witness)
    })
}

/// Runs `f` on a fresh thread with [`WITNESS_STACK`] bytes of stack and waits for it.
fn on_witness_thread<T: Send>(f: impl FnOnce() -> Result<T, ZkError> + Send) -> Result<T, ZkError> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("edgent-witness".into())
            .stack_size(WITNESS_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| ZkError::Witness(format!("cannot start the witness thread: {e}")))?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

struct Exports {
    field_num_len32: TypedFunc<(), i32>,
    shared_start: TypedFunc<(), i32>,
    get_raw_prime: TypedFunc<(), ()>,
    read_shared: TypedFunc<i32, i32>,
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
            shared_start: f!("getSharedRWMemoryStart"),
            get_raw_prime: f!("getRawPrime"),
            read_shared: f!("readSharedRWMemory"),
            init: f!("init"),
            input_signal_size: f!("getInputSignalSize"),
            set_input: f!("setInputSignal"),
            input_size: f!("getInputSize"),
            witness_size: f!("getWitnessSize"),
            get_witness: f!("getWitness"),
        })
    }
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
