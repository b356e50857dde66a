// The create form's parsers (node --test; run by tests/cockpit.rs too):
// what a user types becomes the CreateContainer value, bad input a message
// naming what is wrong.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FIELDS, parseDuration, parseSize, splitWords } from "../src/create-options.js";

const field = key => FIELDS.find(f => f.key === key);

test("command lines split as a shell splits words", () => {
    assert.deepEqual(splitWords("sh -c 'echo hi; sleep 1'"), ["sh", "-c", "echo hi; sleep 1"]);
    assert.deepEqual(splitWords('echo "a \\"b\\"" c\\ d ""'), ["echo", 'a "b"', "c d", ""]);
    assert.throws(() => splitWords("echo 'open"), /unclosed ' quote/);
});

test("sizes in podman's units", () => {
    assert.equal(parseSize("512M"), 512 * 1024 * 1024);
    assert.equal(parseSize("1g"), 1024 ** 3);
    assert.equal(parseSize("1.5KiB"), 1536);
    assert.equal(parseSize("4096"), 4096);
    assert.throws(() => parseSize("lots"), /not a size/);
});

test("env, labels, limits", () => {
    assert.deepEqual(field("env").parse("A=1\n\n B=x=y "), ["A=1", "B=x=y"]);
    assert.throws(() => field("env").parse("NOEQUALS"), /NAME=VALUE/);
    assert.deepEqual(field("labels").parse("a=b\nc="), { a: "b", c: "" });
    assert.throws(() => field("labels").parse("=v"), /KEY=VALUE/);
    assert.equal(field("cpus").parse("0.5"), 0.5);
    assert.throws(() => field("cpus").parse("-1"), /positive/);
    assert.throws(() => field("pids_limit").parse("2.5"), /whole number/);
    assert.deepEqual(field("ports").parse("8080:80, 127.0.0.1:53:53/udp"), ["8080:80", "127.0.0.1:53:53/udp"]);
});

test("durations, restart policies, storage and health rows", () => {
    assert.equal(parseDuration("30s"), 30e6);
    assert.equal(parseDuration("1m30s"), 90e6);
    assert.equal(parseDuration("500ms"), 500e3);
    assert.throws(() => parseDuration("soon"), /not a duration/);
    assert.throws(() => parseDuration("30"), /not a duration/);
    assert.equal(field("restart").parse("on-failure:3"), "on-failure:3");
    assert.throws(() => field("restart").parse("sometimes"), /on-failure/);
    assert.deepEqual(field("volumes").parse("data:/data\n/srv:/srv:ro"), ["data:/data", "/srv:/srv:ro"]);
    assert.deepEqual(field("cap_drop").parse("ALL"), ["ALL"]);
    assert.deepEqual(field("health_cmd").parse("wget -q localhost"), ["/bin/sh", "-c", "wget -q localhost"]);
});

test("every field names a D-Bus type and a parser", () => {
    const keys = new Set();
    for (const f of FIELDS) {
        assert.match(f.type, /^(s|b|d|t|x|as|a\{ss\})$/, f.key);
        assert.equal(typeof f.parse, "function", f.key);
        assert.ok(!keys.has(f.key), `${f.key} twice`);
        keys.add(f.key);
    }
});
