// multiwan as a library: the component, the ready program, and the pure layers beneath them for
// tools of your own.
export { Gateway, GATEWAY_TYPE, type GatewayArgs, type GatewayConfigInput, type LinkInfo } from "./gateway";
export { siteProgram } from "./program";
export {
  ConfigError,
  parseGateway,
  parseSite,
  siteSchema,
  type Gateway as GatewayConfig,
  type GatewayInput,
  type Site,
} from "./config";
export { planGateway, type Plan } from "./plan";
export { planSplit, type Split } from "./split";
export { renderBundle, bundleFingerprint, type Bundle } from "./render";
