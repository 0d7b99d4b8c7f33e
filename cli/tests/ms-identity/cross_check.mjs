// Microsoft's ACS identity client against the tests' stand-in identity service
// (cli/tests/identity.rs runs this). The connection strings come from the environment, never
// from the command line. Prints one JSON object of what the client got back; never a key.
// The stand-in is plain http on loopback: the client's own `allowInsecureConnection` option
// lets it connect (it changes nothing of the signing).
import { CommunicationIdentityClient } from "@azure/communication-identity";

const options = { allowInsecureConnection: true };
const client = new CommunicationIdentityClient(process.env.ACS_CONNECTION_STRING, options);
const out = {};

const { user, token, expiresOn } = await client.createUserAndToken(["voip"]);
out.created = { id: user.communicationUserId, token, expiresOn: expiresOn.toISOString() };

const issued = await client.getToken(user, ["voip"]);
out.issued = { token: issued.token, expiresOn: issued.expiresOn.toISOString() };

await client.deleteUser(user);

const status = async (call) => {
  try {
    await call();
    return { status: "succeeded" };
  } catch (e) {
    return { status: e.statusCode, code: e.code };
  }
};
out.unknown = await status(() => client.getToken(user, ["voip"]));
const wrong = new CommunicationIdentityClient(process.env.WRONG_CONNECTION_STRING, options);
out.wrongKey = await status(() => wrong.createUser());

console.log(JSON.stringify(out));
