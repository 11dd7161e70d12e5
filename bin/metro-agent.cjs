#!/usr/bin/env node
// Entry point of `metro-agent`. CommonJS on purpose: libuv sizes its thread pool (where every
// volume file read, write and fdatasync runs) once, when the pool is first used, and an ES module
// entry is itself read through that pool. Here the size is set before anything has touched it.
'use strict';
/** Volume I/O in flight at once per agent; the libuv default of 4 starves a queue depth of 32. */
const threadPoolSizeDefault = '8';
if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = threadPoolSizeDefault;
import('./metro-agent.js');
