// `pulumi up` on a site stack: Pulumi.yaml holds shared defaults, Pulumi.<site>.yaml the site.
import { siteProgram } from "./components/program";

export const gateways = siteProgram();
