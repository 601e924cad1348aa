// @pathcheck/dcc-sdk ships ES modules as .js files importing "./resolver" without an extension,
// loaded through the `esm` package, which no longer works on current Node. This hook lets Node
// load them natively: an extension-less relative import inside the SDK resolves to "<it>.js".
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err && err.code === "ERR_MODULE_NOT_FOUND" && specifier.startsWith(".") && !specifier.endsWith(".js")) {
      return next(specifier + ".js", context);
    }
    throw err;
  }
}
