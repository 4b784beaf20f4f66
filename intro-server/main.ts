/** Stand-alone entry (tests spawn it): `node --import tsx intro-server/main.ts --listen HOST:PORT ...`. */
import { introServerCommand } from "./cli.js";

process.exitCode = await introServerCommand(process.argv.slice(2));
