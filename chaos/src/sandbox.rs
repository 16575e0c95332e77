//! The limits every scenario script runs under: a script is code from a file someone
//! handed us, so it gets bounded strings, arrays, maps, operations and nesting, no
//! `eval`, and `import` only of modules below its own folder. Each refusal stops the
//! script with one line naming it (`file:line: ...`, exit 2).

use crate::script::{Ctx, StopKind};
use rhai::module_resolvers::FileModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, Module, ModuleResolver, Position, Shared};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Largest script or module file read.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// Most string bytes in one value, in bytes. Rhai counts every string inside an array or
/// map towards it: `large_log.rhai` holds 24 MB of voter names in one array.
pub const MAX_STRING: usize = 64 << 20;
/// Most items in one array, nested arrays' items included (the largest scenario votes
/// 10,000 at a time, 30,000 items).
pub const MAX_ARRAY: usize = 100_000;
/// Most entries in one object map, nested maps' included: an array of 10,000 vote results
/// (`vote_all`) holds about 80,000, so the limit sits well above that.
pub const MAX_MAP: usize = 500_000;
/// Most operations in one run: a runaway loop ends with an error instead of hanging.
pub const MAX_OPERATIONS: u64 = 200_000_000;
/// Deepest nesting of function calls.
pub const MAX_CALL_LEVELS: usize = 64;
/// Deepest nesting of expressions (at top level, inside functions).
pub const MAX_EXPR_DEPTHS: (usize, usize) = (64, 32);
/// Most modules one run may import.
pub const MAX_MODULES: usize = 16;

/// What the limits are, for the line a script that hits one gets.
pub fn limits_line() -> String {
    format!("strings up to {MAX_STRING} bytes, arrays up to {MAX_ARRAY} items, maps up to {MAX_MAP} entries")
}

/// What Rhai's "too large" error was about, in our words.
pub fn what_grew(rhai_says: &str) -> &'static str {
    let says = rhai_says.to_lowercase();
    if says.contains("string") {
        "a string"
    } else if says.contains("array") {
        "an array"
    } else if says.contains("map") {
        "a map"
    } else {
        "a value"
    }
}

/// Puts `engine` under the limits, for the script at `script`: imports resolve only
/// below its folder.
pub fn confine(engine: &mut Engine, script: &Path, ctx: &Rc<Ctx>) {
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_MAP)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1)
        .set_max_modules(MAX_MODULES);
    // `eval` runs a string as code: a script's strings are data, never code.
    engine.disable_symbol("eval");
    // Rhai checks a map's size when a function returns it or a property is set, but not
    // when `m[key] = v` adds a key (it checks the element): a loop of those would grow a
    // map until the operation limit, millions of entries. So every read of a variable
    // that holds a map checks its size (`m[key] = v` reads `m` first). `on_var` is marked
    // volatile, not deprecated.
    #[allow(deprecated)]
    engine.on_var(|name, _, ctx| match ctx.scope().get(name) {
        Some(v) if v.is_map() && v.read_lock::<rhai::Map>().is_some_and(|m| m.len() > MAX_MAP) => {
            Err(Box::new(EvalAltResult::ErrorDataTooLarge("Size of object map".into(), Position::NONE)))
        }
        _ => Ok(None),
    });
    let folder = script.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let root = folder.canonicalize().unwrap_or_else(|_| folder.to_path_buf());
    engine.set_module_resolver(Confined { inner: FileModuleResolver::new_with_path(&root), root, ctx: ctx.clone() });
}

/// Resolves `import "x"` to `<scenario folder>/x.rhai` only: no absolute path, no `..`,
/// nothing a symbolic link leads out of the folder to, no file over
/// [`MAX_SCRIPT_BYTES`].
struct Confined {
    root: PathBuf,
    inner: FileModuleResolver,
    ctx: Rc<Ctx>,
}

impl Confined {
    fn refuse(&self, path: &str, why: String, pos: Position) -> Box<EvalAltResult> {
        *self.ctx.stop.borrow_mut() = Some(StopKind::Usage);
        let shown: String = path.chars().take(80).flat_map(char::escape_default).collect();
        Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(format!("import \"{shown}\" refused: {why}")), pos))
    }

    fn check(&self, path: &str) -> Result<(), String> {
        let below = || format!("only modules below {} may be imported", self.root.display());
        let p = Path::new(path);
        if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("an absolute path or one with '..'; {}", below()));
        }
        let file = self.root.join(p).with_extension("rhai");
        let real = file.canonicalize().map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        if !real.starts_with(&self.root) {
            return Err(format!("it leads to {}; {}", real.display(), below()));
        }
        let len = std::fs::metadata(&real).map_err(|e| format!("cannot read {}: {e}", real.display()))?.len();
        if len > MAX_SCRIPT_BYTES {
            return Err(format!("{} is {len} bytes, over the {MAX_SCRIPT_BYTES} byte limit", real.display()));
        }
        Ok(())
    }
}

impl ModuleResolver for Confined {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        self.check(path).map_err(|why| self.refuse(path, why, pos))?;
        self.inner.resolve(engine, source, path, pos)
    }
}
