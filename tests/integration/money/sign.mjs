#!/usr/bin/env node
// Sign one EIP-3009 TransferWithAuthorization with viem and print an x402 payment header
// value (base64 JSON). Used by the money tests to craft payments the official client would
// never send (wrong amount, wrong recipient, expired window). Copied next to the x402
// client's node_modules by the tests. Input: one JSON object on argv[2]:
//   {key, version (1|2), network ("base"|"base-sepolia"), payTo (accepted.payTo), to,
//    value, amount (accepted.amount), validAfter, validBefore, nonce?}
import { privateKeyToAccount } from "viem/accounts";
import crypto from "node:crypto";

const NETS = {
  "base": { caip2: "eip155:8453", chainId: 8453, asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", name: "USD Coin", version: "2" },
  "base-sepolia": { caip2: "eip155:84532", chainId: 84532, asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e", name: "USDC", version: "2" },
};
const a = JSON.parse(process.argv[2]);
const net = NETS[a.network ?? "base"];
const account = privateKeyToAccount(a.key);
const nonce = a.nonce ?? "0x" + crypto.randomBytes(32).toString("hex");
const message = {
  from: account.address, to: a.to, value: BigInt(a.value),
  validAfter: BigInt(a.validAfter), validBefore: BigInt(a.validBefore), nonce,
};
const signature = await account.signTypedData({
  domain: { name: net.name, version: net.version, chainId: net.chainId, verifyingContract: net.asset },
  types: { TransferWithAuthorization: [
    { name: "from", type: "address" }, { name: "to", type: "address" }, { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" }, { name: "validBefore", type: "uint256" }, { name: "nonce", type: "bytes32" }] },
  primaryType: "TransferWithAuthorization",
  message,
});
const authorization = { from: account.address, to: a.to, value: String(a.value),
  validAfter: String(a.validAfter), validBefore: String(a.validBefore), nonce };
const payload = a.version === 1
  ? { x402Version: 1, scheme: "exact", network: a.network ?? "base", payload: { signature, authorization } }
  : { x402Version: 2, payload: { signature, authorization },
      accepted: { scheme: "exact", network: net.caip2, amount: String(a.amount ?? a.value), asset: net.asset,
                  payTo: a.payTo ?? a.to, maxTimeoutSeconds: 300, extra: { name: net.name, version: net.version } } };
process.stdout.write(JSON.stringify({ header: Buffer.from(JSON.stringify(payload)).toString("base64"),
                                      from: account.address, nonce }));
