// Imported first by the tcw binary, before anything uses libuv's thread pool (which reads the variable once).
// The pool runs every fs call and the embedded queue's fsyncs; its default of 4 threads makes a task's file work
// queue behind fsyncs at capacity 4 and more. An operator's own UV_THREADPOOL_SIZE wins.
process.env.UV_THREADPOOL_SIZE ??= '16';
