// multiwan as a library: the component, and the pure layers beneath it for tools of your own.
export { Gateway, type GatewayArgs, type LinkInfo } from "./gateway";
export { ConfigError, parseSite, siteSchema, type Gateway as GatewayConfig, type Site } from "./config";
export { planGateway, exactWeightedSplit, type Plan } from "./plan";
export { renderBundle, bundleFingerprint, type Bundle } from "./render";
