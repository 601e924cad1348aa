import { register } from "node:module";

register("./resolve_js.mjs", import.meta.url);
