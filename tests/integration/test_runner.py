"""POST /v1/run for every shipped language, on the real engine."""
import json
import time

from harness import REPO, b64, check_error, main

with open(REPO + "/languages.json") as f:
    LANGUAGES = json.load(f)

HELLO = {
    "python3": 'print("Hello World.")',
    "javascript": 'console.log("Hello World.")',
    "c": '#include <stdio.h>\nint main(void){puts("Hello World.");return 0;}',
    "cpp": '#include <iostream>\nint main(){std::cout<<"Hello World."<<std::endl;}',
    "csharp": 'using System;\nclass P{static void Main(){Console.WriteLine("Hello World.");}}',
    "bash": 'echo "Hello World."',
    "r": 'cat("Hello World.\\n")',
}
ECHO_STDIN = {
    "python3": "import sys\nprint(sys.stdin.read().upper(), end='')",
    "javascript": "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(s.toUpperCase()))",
    "c": '#include <stdio.h>\n#include <ctype.h>\nint main(void){int c;while((c=getchar())!=EOF)putchar(toupper(c));}',
    "cpp": '#include <iostream>\n#include <cctype>\nint main(){char c;while(std::cin.get(c))std::cout<<(char)std::toupper(c);}',
    "csharp": 'using System;\nclass P{static void Main(){Console.Write(Console.In.ReadToEnd().ToUpper());}}',
    "bash": "tr a-z A-Z",
    "r": "cat(paste0(toupper(readLines(file('stdin'))), '\\n'), sep = '')",
}
FAIL = {
    "python3": "import sys\nprint('partial')\nsys.exit(3)",
    "javascript": "console.log('partial'); process.exit(3)",
    "c": '#include <stdio.h>\nint main(void){puts("partial");return 3;}',
    "cpp": '#include <iostream>\nint main(){std::cout<<"partial"<<std::endl;return 3;}',
    "csharp": 'using System;\nclass P{static int Main(){Console.WriteLine("partial");return 3;}}',
    "bash": "echo partial; exit 3",
    "r": "cat('partial\\n'); quit(status = 3)",
}
COMPILE_ERROR = {
    "c": "int main(void){ return undefined_name; }",
    "cpp": "int main(){ return undefined_name; }",
    "csharp": "class P{static void Main(){ undefined_name(); }}",
}
COLOURED = {
    "python3": r"print('\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain')",
    "javascript": r"console.log('\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain')",
    "c": r'#include <stdio.h>' '\n' r'int main(void){printf("\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain\n");}',
    "cpp": r'#include <cstdio>' '\n' r'int main(){std::printf("\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain\n");}',
    "csharp": r'using System;class P{static void Main(){Console.WriteLine("\u001b[1;31mred\u001b[0m \u001b]0;title\u0007plain");}}',
    "bash": r"printf '\033[1;31mred\033[0m \033]0;title\007plain\n'",
    "r": r"cat('\033[1;31mred\033[0m \033]0;title\007plain\n')",
}
FOREVER = {
    "python3": "while True: pass",
    "javascript": "for(;;){}",
    "c": "int main(void){for(;;){}}",
    "cpp": "int main(){for(;;){}}",
    "csharp": "class P{static void Main(){for(;;){}}}",
    "bash": "while :; do :; done",
    "r": "repeat {}",
}
INTERLEAVED = {
    "python3": "import sys\nfor i in range(3):\n    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)",
    "javascript": "for (let i=0;i<3;i++){console.log('out '+i);console.error('err '+i);}",
    "c": '#include <stdio.h>\nint main(void){for(int i=0;i<3;i++){printf("out %d\\n",i);fflush(stdout);fprintf(stderr,"err %d\\n",i);}}',
    "cpp": '#include <iostream>\nint main(){for(int i=0;i<3;i++){std::cout<<"out "<<i<<std::endl;std::cerr<<"err "<<i<<std::endl;}}',
    "csharp": 'using System;class P{static void Main(){for(int i=0;i<3;i++){Console.Out.WriteLine("out "+i);Console.Out.Flush();Console.Error.WriteLine("err "+i);}}}',
    "bash": "for i in 0 1 2; do echo out $i; echo err $i >&2; done",
    "r": "for (i in 0:2) { cat(sprintf('out %d\\n', i)); flush(stdout()); "
         "cat(sprintf('err %d\\n', i), file = stderr()) }",
}


def run(svc, language, code, **extra):
    body = {"language": language, "code": code}
    body.update(extra)
    r = svc.run(body)
    assert r.status == 200, (language, r)
    result = r.json()
    assert result["language"] == language
    return result


def test_every_language_is_tested(svc):
    assert sorted(HELLO) == sorted(LANGUAGES), "a shipped language lacks tests"


def test_hello_world(svc):
    for lang, code in HELLO.items():
        res = run(svc, lang, code)
        assert res["status"] == "ok" and res["exit_code"] == 0, (lang, res)
        assert res["stdout"] == "Hello World.\n", (lang, res)
        assert res["stderr"] == "", (lang, res)
        assert isinstance(res["duration_ms"], int)


def test_stdin(svc):
    for lang, code in ECHO_STDIN.items():
        res = run(svc, lang, code, stdin="abc\nxyz\n")
        assert res["status"] == "ok", (lang, res)
        assert res["stdout"] == "ABC\nXYZ\n", (lang, res)


def test_runtime_error(svc):
    for lang, code in FAIL.items():
        res = run(svc, lang, code)
        assert res["status"] == "runtime_error" and res["exit_code"] == 3, (lang, res)
        assert res["stdout"] == "partial\n", (lang, res)


def test_compile_error(svc):
    for lang, code in COMPILE_ERROR.items():
        res = run(svc, lang, code)
        assert res["status"] == "compile_error", (lang, res)
        assert res["exit_code"] != 0
        text = res["stdout"] + res["stderr"]
        assert "undefined_name" in text, (lang, res)


def test_coloured_output_comes_back_clean(svc):
    for lang, code in COLOURED.items():
        res = run(svc, lang, code)
        assert res["status"] == "ok", (lang, res)
        assert res["stdout"] == "red plain\n", (lang, res)


def test_program_that_never_ends_times_out(svc):
    for lang, code in FOREVER.items():
        t0 = time.time()
        res = run(svc, lang, code, timeout_s=2)
        took = time.time() - t0
        assert res["status"] == "timeout", (lang, res)
        # the deadline plus compile and grace; a program never stopped
        # would run to the client's 300 s timeout
        assert took < 60, (lang, took)


def test_interleaved_streams_come_back_apart(svc):
    for lang, code in INTERLEAVED.items():
        res = run(svc, lang, code)
        assert res["stdout"] == "out 0\nout 1\nout 2\n", (lang, res)
        assert res["stderr"] == "err 0\nerr 1\nerr 2\n", (lang, res)


def test_files_beside_the_code(svc):
    res = run(svc, "python3", "print(open('data/in.txt').read())",
              files=[{"name": "data/in.txt", "content_base64": b64("file body")}])
    assert res["stdout"] == "file body\n", res


def test_output_cap(svc):
    res = run(svc, "python3", "import sys\nwhile True: sys.stdout.write('x' * 65536)")
    assert res["status"] == "output_limit", res
    assert res["stdout_truncated"] is True
    assert len(res["stdout"]) == 1 << 20


def test_bad_run_requests(svc):
    check_error(svc.run({"language": "python3"}), 400, "invalid_request")
    check_error(svc.run({"language": "python3", "code": "1", "timeout_s": 3600}),
                400, "invalid_request")
    check_error(svc.run({"language": "python3", "code": "1", "image": "alpine"}),
                400, "invalid_request")


if __name__ == "__main__":
    main(globals())
